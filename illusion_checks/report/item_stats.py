"""The few numbers the report needs that `summary` does not hold, computed from `items`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from illusion_checks.fates import Fate
from illusion_checks.ranks import boundary_failed

Item = Mapping[str, Any]

# Log-scale rank buckets for the gold first-token rank (paper Fig. 3); the last is open-ended.
RANK_BUCKETS: tuple[tuple[int, float], ...] = (
    (1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 64), (65, math.inf))


def bucket_label(lo: int, hi: float) -> str:
    """'1', '3-4', '65+'."""
    if hi == math.inf:
        return f"{lo}+"
    return str(lo) if lo == hi else f"{lo}-{int(hi)}"


RANK_GROUPS = ("mc_only", "kept", "reference_failures")


def _group_outcomes(items: Iterable[Item], failed: bool = False) -> dict[str, list[Mapping[str, Any]]]:
    """The outcomes whose gold rank Fig. 3's three groups show (with `failed`, those left out
    because their ranked path failed the boundary check, as the summary's medians leave them out).

    MC-only and kept items use the compressed model's outcome; reference failures (items whose
    reference FF is wrong) use the reference's own, the paper's "already failed" baseline.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {key: [] for key in RANK_GROUPS}
    for it in items:
        chosen = []
        if it["fate"] in (Fate.MC_ONLY.value, Fate.KEPT.value):
            chosen.append((it["fate"], it["compressed"]))
        if not it["reference"]["ff"]["correct"]:
            chosen.append(("reference_failures", it["reference"]))
        for key, outcome in chosen:
            if boundary_failed(outcome) == failed:
                groups[key].append(outcome)
    return groups


def boundary_failures(items: Iterable[Item]) -> dict[str, int]:
    """Per Fig. 3 group, how many outcomes it leaves out because their ranked path failed the boundary check."""
    return {key: len(outcomes) for key, outcomes in _group_outcomes(items, failed=True).items()}


def censored_bound(outcome: Mapping[str, Any]) -> int | None:
    """k when the outcome's gold rank is known only to exceed k (`gold_rank` null, `gold_rank_above`
    k: a server that shows only its top k log-probabilities), else None."""
    above = outcome.get("gold_rank_above")
    return int(above) if outcome.get("gold_rank") is None and above is not None else None


def rank_groups(items: Iterable[Item]) -> dict[str, list[int]]:
    """Exact gold ranks of Fig. 3's three groups (items without a rank, or with a rank known only
    as beyond a server's top k, are left out; `censored_groups` has the latter)."""
    return {key: [o["gold_rank"] for o in outcomes if o.get("gold_rank") is not None]
            for key, outcomes in _group_outcomes(items).items()}


def censored_groups(items: Iterable[Item]) -> dict[str, list[int]]:
    """Per Fig. 3 group, the bound k of each gold rank known only as >k (censored)."""
    return {key: [k for k in map(censored_bound, outcomes) if k is not None]
            for key, outcomes in _group_outcomes(items).items()}


def bucket_shares(ranks: Sequence[int]) -> list[float | None]:
    """Share of `ranks` in each RANK_BUCKETS bucket (None for every bucket when empty)."""
    if not ranks:
        return [None] * len(RANK_BUCKETS)
    return [sum(lo <= r <= hi for r in ranks) / len(ranks) for lo, hi in RANK_BUCKETS]


@dataclasses.dataclass(frozen=True)
class Recovery:
    """Among the compressed model's MC-only items that ran a probe: how many it reached."""

    n_items: int  # MC-only items
    n_beam: int  # of those, with a beam probe
    beam: float | None
    n_sample: int
    sample: float | None


def mc_only_recovery(items: Iterable[Item]) -> Recovery:
    """Beam-5 / 10-sample reachability of the gold on MC-only items (probes may cover a subset)."""
    mc_only = [it for it in items if it["fate"] == Fate.MC_ONLY.value]
    shares: dict[str, tuple[int, float | None]] = {}
    for probe in ("beam", "sample"):
        ran = [it["compressed"][probe] for it in mc_only if it["compressed"].get(probe) is not None]
        shares[probe] = (len(ran), sum(r["reached"] for r in ran) / len(ran) if ran else None)
    return Recovery(len(mc_only), shares["beam"][0], shares["beam"][1],
                    shares["sample"][0], shares["sample"][1])


def by_language(items: Iterable[Item], langs: Sequence[str]) -> dict[str, list[Item]]:
    """Items grouped by language, in `langs` order, plus 'overall' holding them all."""
    groups: dict[str, list[Item]] = {lang: [] for lang in langs}
    every: list[Item] = []
    for it in items:
        groups.setdefault(it["lang"], []).append(it)
        every.append(it)
    groups["overall"] = every
    return groups
