"""Censored gold ranks (a server that shows only its top k log-probabilities writes a gold beyond
them as `gold_rank: null, gold_rank_above: k`): medians treat them as unknown values larger than
every known rank, never drop them and never turn them into a number."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from illusion_checks import results as R
from illusion_checks.metrics import recompute_check, summarize
from illusion_checks.ranks import censored_median
from tests.helpers.rows import K, censor, item, outcome, served_results

ABOVE = object()  # a rank known only as >K, in the lists below


def ranked(rank) -> dict:
    """A compressed-model outcome of an MC-only item with this rank (ABOVE: censored)."""
    out = outcome(0, 1, rank=1 if rank is ABOVE else rank)
    return censor(out) if rank is ABOVE else out


def split(ranks) -> tuple[list[int], list[int]]:
    return [r for r in ranks if r is not ABOVE], [K for r in ranks if r is ABOVE]


@pytest.mark.parametrize(("ranks", "expected"), [
    ([1, 2, 3, ABOVE, ABOVE], 3.0),      # the middle value is known: exact
    ([1, 2, 3, ABOVE], 2.5),             # both middle values known: their mean
    ([4, ABOVE, 1, 2, 3, ABOVE], 3.5),   # order does not matter
    ([1, ABOVE, ABOVE], None),           # the median is censored
    ([1, 2, ABOVE, ABOVE], None),        # one of the two middle values is censored
    ([ABOVE], None),
    ([ABOVE, ABOVE, 7], None),
    ([], None),
])
def test_censored_median(ranks, expected):
    assert censored_median(*split(ranks)) == expected


def test_without_censoring_the_median_is_the_ordinary_one():
    rng = random.Random(3)
    for n in range(1, 40):
        values = [rng.randint(1, 500) for _ in range(n)]
        assert censored_median(values) == float(statistics.median(values))
        assert censored_median(values, []) == float(statistics.median(values))


def test_a_known_rank_beyond_the_bound_makes_the_median_unknown():
    # A censored >20 may lie anywhere above 20, so it could sort below a known 30 or 40.
    assert censored_median([1, 30, 40], [20]) is None
    # ...but not below 3 or 4, so with those in the middle the median stays exact.
    assert censored_median([1, 2, 3, 4, 40], [20]) == 3.5


def test_summary_medians_keep_censored_ranks_as_larger_unknowns():
    items = []
    for i, rank in enumerate([1, 2, 3, ABOVE, ABOVE]):  # mc_only: median 3, exact
        items.append(item("aa", f"m{i}", outcome(1, 1), ranked(rank)))
    for i, rank in enumerate([1, ABOVE, ABOVE]):  # lost: median censored
        comp = outcome(0, 0, rank=1 if rank is ABOVE else rank)
        items.append(item("aa", f"l{i}", outcome(1, 1), censor(comp) if rank is ABOVE else comp))
    for i, rank in enumerate([1, 2, ABOVE, ABOVE]):  # kept: a middle value censored
        comp = outcome(1, 1, rank=1 if rank is ABOVE else rank)
        items.append(item("aa", f"k{i}", outcome(1, 1), censor(comp) if rank is ABOVE else comp))
    # reference failures: the reference's own ranks 5, 9, >20 -> 9, exact
    for i, rank in enumerate([5, 9, ABOVE]):
        ref = outcome(0, 0, rank=1 if rank is ABOVE else rank)
        items.append(item("aa", f"r{i}", censor(ref) if rank is ABOVE else ref, outcome(0, 0)))
    medians = summarize(items, n_resamples=10)["per_language"]["aa"]["median_gold_rank"]
    assert medians == {"mc_only": 3.0, "lost": None, "kept": None, "produced_only": None,
                       "reference_failures": 9.0}


def test_a_rank_without_a_token_is_still_left_out_and_not_censored():
    # gold_rank null without gold_rank_above: no ranked token, so no value at all (as before).
    items = [item("aa", f"m{i}", outcome(1, 1), ranked(r)) for i, r in enumerate([2, 4])]
    missing = outcome(0, 1)
    missing["gold_rank"] = None
    items += [item("aa", f"n{i}", outcome(1, 1), dict(missing)) for i in range(3)]
    assert summarize(items, n_resamples=10)["overall"]["median_gold_rank"]["mc_only"] == 3.0
    # The same three as censored ranks carry the median beyond what is known.
    items[2:] = [item("aa", f"n{i}", outcome(1, 1), censor(dict(missing))) for i in range(3)]
    assert summarize(items, n_resamples=10)["overall"]["median_gold_rank"]["mc_only"] is None


def test_an_exact_rank_wins_over_a_stray_bound():
    comp = outcome(0, 1, rank=4)
    comp["gold_rank_above"] = K  # inconsistent, but the exact rank is what the model did
    items = [item("aa", "a", outcome(1, 1), comp)]
    assert summarize(items, n_resamples=10)["overall"]["median_gold_rank"]["mc_only"] == 4.0


def _oracle(ranks: list) -> float | None:
    """The median with each censored rank as +inf (exact here: every known rank is <= k)."""
    if not ranks:
        return None
    m = statistics.median([math.inf if r is None else r for r in ranks])
    return None if m == math.inf else float(m)


def test_synthetic_served_results_match_the_infinity_oracle_and_still_validate():
    results = served_results(roles=("reference", "compressed"))
    assert R.validate(results) == []
    assert recompute_check(results) == []
    censored = [it for it in results["items"] if it["compressed"].get("gold_rank_above") == K]
    assert censored and all(it["compressed"]["gold_rank"] is None for it in censored)
    overall = results["summary"]["overall"]["median_gold_rank"]
    for fate in ("kept", "mc_only", "produced_only", "lost"):
        ranks = [it["compressed"]["gold_rank"] for it in results["items"] if it["fate"] == fate]
        assert overall[fate] == _oracle(ranks), fate
    failures = [it["reference"]["gold_rank"] for it in results["items"] if not it["reference"]["ff"]["correct"]]
    assert overall["reference_failures"] == _oracle(failures)
    # The synthetic lost items are mostly beyond the top 20: their median is unknown, not a number,
    # while the reference's failures keep an exact median despite censored ranks among them.
    assert overall["lost"] is None
    assert None in failures and overall["reference_failures"] is not None
    assert all(isinstance(r, int) and r <= K for r in failures if r is not None)
