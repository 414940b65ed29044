"""The four fates of a reference-both-correct item after compression (paper Fig. 8)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


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


def gold_cut(truncation: Any) -> bool:
    """Whether an outcome's FF prompt lost the gold span when its passage was cut to the token cap
    (`truncation.ff.gold_kept` false): the item is then unanswerable for a reason that has nothing
    to do with compression, and is never both-correct. Outcomes written before truncation was
    recorded have none: not cut."""
    ff = truncation.get("ff") if isinstance(truncation, Mapping) else None
    return isinstance(ff, Mapping) and ff.get("gold_kept") is False
