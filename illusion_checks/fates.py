"""The four fates of a reference-both-correct item after compression (paper Fig. 8)."""

from __future__ import annotations

import enum


class Fate(str, enum.Enum):
    """What compression did to an item the reference both produced and recognized."""

    KEPT = "kept"
    MC_ONLY = "mc_only"
    PRODUCED_ONLY = "produced_only"
    LOST = "lost"

    @classmethod
    def of(cls, ff_correct: bool, mc_correct: bool) -> "Fate":
        """The fate given the compressed model's FF and MC correctness."""
        if ff_correct and mc_correct:
            return cls.KEPT
        if mc_correct:
            return cls.MC_ONLY
        if ff_correct:
            return cls.PRODUCED_ONLY
        return cls.LOST


FATE_ORDER = (Fate.KEPT, Fate.MC_ONLY, Fate.PRODUCED_ONLY, Fate.LOST)
