"""The gold rank's summary: medians per fate, the answer-start shares that say whether the rank
speaks of production, and the outcomes whose ranked path failed Appendix B's boundary check.

Works on the per-outcome facts that `metrics` reads off each item (`rank_facts`); pure and
engine-free like `metrics`, which places these blocks in each language's Summary.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from illusion_checks.fates import FATE_ORDER
from illusion_checks.records import (BEGINS_WITH_GOLD, COMPRESSED, FF, GOLD_RANK, GOLD_TOKEN, MODELS, REFERENCE,
                                     Outcome)

# The gold rank is read where the model's answer starts; it says something about production only
# when most correct answers begin with the gold there (not "The answer is ...").
RANK_INTERPRETABLE_SHARE = 0.5
# A backend that sees only the top k log-probabilities writes a gold beyond them as gold_rank null
# plus gold_rank_above k: a censored rank. Rows keep its bound under this key (GOLD_RANK stays None).
GOLD_RANK_ABOVE = "gold_rank_above"
assert GOLD_RANK_ABOVE in Outcome.keys()
BOUNDARY_FAILED = "boundary_failed"  # a row key: the ranked path failed the boundary check

Row = dict[str, Any]


def boundary_failed(outcome: Mapping[str, Any]) -> bool:
    """Whether the outcome's ranked path failed the boundary check. Only a path written with the
    exact check (`gold_token.path`, issue 22) can fail it: files written before keep every rank
    in the medians, as they were computed."""
    token = outcome.get(GOLD_TOKEN) or {}
    return "path" in token and token.get("boundary_ok") is False


def rank_facts(outcome: Mapping[str, Any]) -> Row:
    """What one outcome contributes to the rank summary: its rank (or censoring bound), whether
    its answer begins with the gold, and whether its ranked path failed the boundary check."""
    rank, above = outcome.get(GOLD_RANK), outcome.get(GOLD_RANK_ABOVE)
    begins = outcome[FF].get(BEGINS_WITH_GOLD)  # absent in files written before it existed
    return {GOLD_RANK: None if rank is None else int(rank),
            GOLD_RANK_ABOVE: int(above) if rank is None and above is not None else None,
            BEGINS_WITH_GOLD: None if begins is None else bool(begins),
            BOUNDARY_FAILED: boundary_failed(outcome)}


def censored_median(values: Sequence[float], above: Sequence[int] = ()) -> float | None:
    """Median of `values` plus censored values, each known only to exceed its bound in `above`.

    A censored value counts as larger than every known value (it is: a top-k backend knows every
    rank up to k). The median is exact when it falls on known values only, and None (unknown,
    never a guess) when either middle value is censored, or when a middle known value exceeds
    the smallest bound + 1 (a censored value could then sort below it). None for no values at all.
    """
    n = len(values) + len(above)
    if n == 0:
        return None
    ordered = sorted(values)
    lo, hi = (n - 1) // 2, n // 2
    if hi >= len(ordered) or (above and ordered[hi] > min(above) + 1):
        return None
    return float(statistics.median(ordered[lo:hi + 1]))


def _groups(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """The outcomes each median reads: the compressed model's per fate, the reference's on its FF failures."""
    groups = {fate.value: [r[COMPRESSED] for r in rows if r["fate"] is fate] for fate in FATE_ORDER}
    groups["reference_failures"] = [r[REFERENCE] for r in rows if not r[REFERENCE][FF]]
    return groups


def _rank_median(outcomes: Sequence[Row]) -> float | None:
    """Median gold rank of these outcomes: censored ranks count (as unknown, larger ones); a
    missing rank (no content token) and a path that failed the boundary check do not."""
    kept = [o for o in outcomes if not o[BOUNDARY_FAILED]]
    return censored_median([o[GOLD_RANK] for o in kept if o[GOLD_RANK] is not None],
                           [o[GOLD_RANK_ABOVE] for o in kept if o[GOLD_RANK_ABOVE] is not None])


def median_ranks(rows: Sequence[Row]) -> dict[str, float | None]:
    """Compressed model's median gold rank per fate, and the reference's on its FF failures; None
    where the median falls among ranks known only to lie beyond a server's top k."""
    return {key: _rank_median(outcomes) for key, outcomes in _groups(rows).items()}


def rank_boundary(rows: Sequence[Row]) -> dict[str, Any]:
    """Per model, how many ranked outcomes failed the boundary check; and how many each median left out."""
    block: dict[str, Any] = {model: {"n_ranked": sum(r[model][GOLD_RANK] is not None or r[model][GOLD_RANK_ABOVE]
                                                     is not None for r in rows),
                                     "n_failed": sum(r[model][BOUNDARY_FAILED] for r in rows)} for model in MODELS}
    block["left_out_of_medians"] = {key: sum(o[BOUNDARY_FAILED] for o in outcomes)
                                    for key, outcomes in _groups(rows).items()}
    return block


def answer_start(rows: Sequence[Row]) -> tuple[dict[str, Any], bool | None]:
    """Per model, how many FF-correct answers begin with the gold at the answer start, and whether
    the gold rank is interpretable, decided from the evidence there is: every model with a correct
    answer must begin at least RANK_INTERPRETABLE_SHARE of them with the gold, and at least one
    model must have one. A compressed model that answers nothing correctly (the strongest
    illusion) leaves the decision to the reference's share, rather than withholding every rank.
    None for results written before the field existed."""
    block: dict[str, Any] = {}
    known = True
    for model in MODELS:
        correct = [r[model][BEGINS_WITH_GOLD] for r in rows if r[model][FF]]
        known = known and all(b is not None for b in correct)
        begins = sum(bool(b) for b in correct)
        block[model] = {"n_ff_correct": len(correct), "n_begins_with_gold": begins,
                        "share": begins / len(correct) if correct else None}
    if not known:
        return block, None
    shares = [block[m]["share"] for m in MODELS if block[m]["share"] is not None]
    return block, bool(shares) and all(share >= RANK_INTERPRETABLE_SHARE for share in shares)
