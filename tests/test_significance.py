"""Tests for illusion_checks.significance: McNemar's exact test against textbook values and brute force,
where it and an unpaired test disagree, and the minimum detectable effect against a Monte-Carlo
simulation of the paired design."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from illusion_checks.significance import (McNemar, critical_count, items_needed, mcnemar_p, minimum_detectable_rate,
                                          one_way_power)

ALPHA = 0.05


# --- McNemar's exact test ------------------------------------------------------------------------

@pytest.mark.parametrize("drops, gains, expected", [
    (1, 9, Fraction(22, 1024)),  # the textbook case: 2 * (C(10,0) + C(10,1)) / 2**10 = 0.021484375
    (9, 1, Fraction(22, 1024)),
    (2, 8, Fraction(112, 1024)),  # 2 * (1 + 10 + 45) / 1024 = 0.109375
    (0, 6, Fraction(1, 32)),  # 2 / 2**6: the fewest one-way pairs significant at 0.05
    (0, 5, Fraction(1, 16)),  # 2 / 2**5: one fewer is not
    (10, 0, Fraction(1, 512)),
    (3, 3, Fraction(1)),  # 2 * P[X <= 3], X ~ Bin(6, 1/2), is 1.3125: capped at 1
    (0, 0, Fraction(1)),  # no discordant pair: no evidence
])
def test_mcnemar_matches_exact_fractions(drops: int, gains: int, expected: Fraction) -> None:
    assert mcnemar_p(drops, gains) == float(expected)


def _brute_force_p(drops: int, gains: int) -> Fraction:
    """The two-sided p-value by enumerating every way the discordant pairs could have split under H0
    (each equally likely): the share of splits at least as far from an even split as the observed one."""
    n = drops + gains
    if n == 0:
        return Fraction(1)
    observed = abs(2 * drops - n)
    extreme = sum(abs(2 * sum(split) - n) >= observed for split in itertools.product((0, 1), repeat=n))
    return Fraction(extreme, 2 ** n)


@pytest.mark.parametrize("drops, gains", [(d, g) for d in range(7) for g in range(7) if d + g <= 12])
def test_mcnemar_equals_brute_force_enumeration(drops: int, gains: int) -> None:
    assert mcnemar_p(drops, gains) == pytest.approx(float(_brute_force_p(drops, gains)), abs=1e-15)
    assert mcnemar_p(drops, gains) == mcnemar_p(gains, drops)


def test_mcnemar_counts_only_the_discordant_pairs_and_is_exact_on_large_counts() -> None:
    pairs = [(True, False)] * 9 + [(False, True)] + [(True, True)] * 50 + [(False, False)] * 40
    assert McNemar.of(pairs) == McNemar(9, 1, 22 / 1024)
    assert McNemar.of(pairs).significant_drop(ALPHA) and not McNemar(1, 9, 22 / 1024).significant_drop(ALPHA)
    # 2 * P[X <= 900], X ~ Bin(2000, 1/2): integers throughout, no overflow, a tiny positive number.
    tiny = mcnemar_p(1100, 900)
    assert 0 < tiny < 1e-5 and tiny == pytest.approx(float(Fraction(2 * sum(math.comb(2000, i) for i in range(901)),
                                                                    2 ** 2000)), rel=1e-12)
    with pytest.raises(ValueError, match="must be >= 0"):
        mcnemar_p(-1, 3)


def _unpaired_z_test_p(right_before: int, right_after: int, n: int) -> float:
    """The two-proportion z-test (pooled), which treats the two models' answers as independent samples."""
    p1, p2, pooled = right_before / n, right_after / n, (right_before + right_after) / (2 * n)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * 2 / n)
    return math.erfc(abs(z) / math.sqrt(2))


@pytest.mark.parametrize("drops, gains, both_right, both_wrong, paired_significant", [
    # Positively correlated answers (the usual case after compression): 10 items lost, none gained.
    # Unpaired, 60% vs 50% of 100 is p = 0.16; paired, 10 of 10 discordant items going one way is p = 0.002.
    (10, 0, 50, 40, True),
    # Negatively correlated answers: 45% vs 30% is significant unpaired (p = 0.03), but 40 vs 25
    # discordant items are not (p = 0.08).
    (40, 25, 5, 30, False),
])
def test_mcnemar_and_an_unpaired_test_disagree_on_crafted_pairs(drops: int, gains: int, both_right: int,
                                                               both_wrong: int, paired_significant: bool) -> None:
    n = drops + gains + both_right + both_wrong
    pairs = ([(True, False)] * drops + [(False, True)] * gains + [(True, True)] * both_right
             + [(False, False)] * both_wrong)
    paired = McNemar.of(pairs).p_value
    unpaired = _unpaired_z_test_p(drops + both_right, gains + both_right, n)
    assert (paired <= ALPHA) is paired_significant
    assert (unpaired <= ALPHA) is not paired_significant


# --- minimum detectable effect -------------------------------------------------------------------

def test_the_critical_count_is_the_fewest_one_way_pairs_mcnemar_finds_significant() -> None:
    assert critical_count(0.05) == 6 and critical_count(0.01) == 8 and critical_count(0.5) == 2
    for alpha in (0.001, 0.01, 0.05, 0.2):
        k = critical_count(alpha)
        assert mcnemar_p(k, 0) <= alpha < mcnemar_p(k - 1, 0)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="alpha must lie in"):
            critical_count(bad)


def test_the_mde_has_80_percent_power_and_none_below_the_critical_count() -> None:
    assert minimum_detectable_rate(5, ALPHA) is None  # 5 items cannot reach 6 one-way pairs
    for n in (6, 20, 53, 200, 1800):
        mde = minimum_detectable_rate(n, ALPHA)
        assert one_way_power(n, mde, ALPHA) == pytest.approx(0.8, abs=1e-9)
        assert one_way_power(n, mde * 0.999, ALPHA) < 0.8
    assert minimum_detectable_rate(200, 0.01) > minimum_detectable_rate(200, 0.05) > minimum_detectable_rate(400, 0.05)


def test_items_needed_is_the_fewest_items_whose_mde_fits() -> None:
    for rate in (0.02, 0.15, 0.4, 1.0):
        n = items_needed(rate, ALPHA)
        assert minimum_detectable_rate(n, ALPHA) <= rate
        assert n == critical_count(ALPHA) or (minimum_detectable_rate(n - 1, ALPHA) or 2.0) > rate
    assert items_needed(0.15, ALPHA) == 52 and items_needed(0.0, ALPHA) is None


def _simulated_power(n: int, rate: float, trials: int, rng: random.Random) -> float:
    """Brute force: n reference-both-correct items, each dissociating (MC-only) with probability `rate`,
    else kept, produced-only or lost; McNemar on (reference, compressed) is this item MC-only?"""
    rejected = 0
    for _ in range(trials):
        fates = rng.choices(("mc_only", "kept", "produced_only", "lost"),
                            weights=(rate, 0.85 - rate, 0.05, 0.10), k=n)
        rejected += McNemar.of((False, fate == "mc_only") for fate in fates).p_value <= ALPHA
    return rejected / trials


@pytest.mark.parametrize("n", [12, 40])
def test_the_mde_agrees_with_a_monte_carlo_simulation(n: int) -> None:
    rng = random.Random(20261207)
    trials = 3000
    mde = minimum_detectable_rate(n, ALPHA)
    at_mde = _simulated_power(n, mde, trials, rng)
    assert at_mde == pytest.approx(0.8, abs=0.03)  # binomial sd of the estimate: 0.007
    below = _simulated_power(n, mde * 0.6, trials, rng)
    assert below < 0.7  # an effect clearly below the MDE is missed more than the 20% the MDE allows
