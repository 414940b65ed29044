"""Exact paired statistics for the gates, in pure Python (`math` only): McNemar's exact test on two
models' per-item correctness, and the minimum detectable effect (MDE) of a one-directional paired
design.

McNemar (exact, two-sided). Of the items where the two models disagree, `drops` are right before
compression (the reference, or the less compressed spec of a sweep) and wrong after, `gains` the
reverse. Under H0 (compression moves an item either way alike) each discordant item goes either way
with probability 1/2 given their number, so

    p = min(1, 2 * P[X <= min(drops, gains)]),  X ~ Bin(drops + gains, 1/2);  p = 1 when there is none.

The sum is done in integers (`math.comb`), so p is exact up to the final division. An item where
both models agree says nothing about the difference and does not enter the test.

Minimum detectable effect. The gates' rates count items that moved one way only: a dissociated
(MC-only) item, or a both-correct item no longer produced, was right for the reference by
construction, so the reverse move cannot happen and McNemar's `gains` is 0. The test then rejects at
level alpha exactly when drops >= k_alpha, the smallest count with 2 * 2**-k <= alpha (6 at alpha
0.05). If each of n items moves independently with the same probability `rate` (the assumption),
drops ~ Bin(n, rate) and the power is

    power(n, rate) = P[Bin(n, rate) >= k_alpha],

an exact binomial tail, increasing in both n and rate. The MDE is the smallest rate whose power
reaches the target (0.8), found by bisection; none when n < k_alpha (no rate can reach it). Where the
reverse move can happen (an FF drop over all items), gains > 0 only lowers the power, so the same
number is the MDE of the most favourable case: a lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

POWER = 0.8  # the conventional target power of an MDE
DEFAULT_ALPHA = 0.05
_BISECTION_STEPS = 60  # the rate's bracket shrinks to 2**-60: far below any printed digit


def mcnemar_p(drops: int, gains: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts."""
    if drops < 0 or gains < 0:
        raise ValueError(f"discordant counts must be >= 0, but are {drops} and {gains}")
    n = drops + gains
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(drops, gains) + 1))  # 2**n * P[X <= min]
    return min(1.0, 2 * tail / 2 ** n)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of one probe's correctness, before vs after compression, on paired items."""

    drops: int  # right before, wrong after
    gains: int  # wrong before, right after
    p_value: float

    @classmethod
    def of(cls, pairs: Iterable[tuple[bool, bool]]) -> McNemar:
        """The test on (correct before, correct after) pairs, one per item."""
        drops = gains = 0
        for before, after in pairs:
            drops += bool(before) and not after
            gains += bool(after) and not before
        return cls(drops, gains, mcnemar_p(drops, gains))

    def significant_drop(self, alpha: float) -> bool:
        """More items lost than gained, and significantly so at level alpha (p <= alpha)."""
        return self.drops > self.gains and self.p_value <= alpha

    def to_dict(self) -> dict[str, Any]:
        return {"drops": self.drops, "gains": self.gains, "p_value": self.p_value}


def critical_count(alpha: float) -> int:
    """k_alpha: the fewest one-way discordant items (none the other way) McNemar finds significant."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), but is {alpha!r}")
    k = 1
    while mcnemar_p(k, 0) > alpha:
        k += 1
    return k


def one_way_power(n: int, rate: float, alpha: float) -> float:
    """P[Bin(n, rate) >= k_alpha]: how often n items, each moving one way with probability `rate`,
    give a significant McNemar test at level alpha."""
    k = critical_count(alpha)
    if n < k or rate <= 0.0:
        return 0.0
    if rate >= 1.0:
        return 1.0
    below = sum(math.comb(n, i) * rate ** i * (1.0 - rate) ** (n - i) for i in range(k))
    return min(1.0, max(0.0, 1.0 - below))


def minimum_detectable_rate(n: int, alpha: float, power: float = POWER) -> float | None:
    """The smallest rate at which n items reach `power` (the upper end of a 2**-60 bracket, so its
    power is at least `power`); None when even a rate of 1 cannot (n < k_alpha)."""
    if one_way_power(n, 1.0, alpha) < power:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if one_way_power(n, mid, alpha) >= power else (mid, hi)
    return hi


def items_needed(rate: float, alpha: float, power: float = POWER) -> int | None:
    """The fewest items whose MDE is at most `rate`; None for a rate of 0 or less (no count can)."""
    if rate <= 0.0:
        return None
    lo = critical_count(alpha) - 1  # too few: power 0
    hi = lo + 1
    while one_way_power(hi, rate, alpha) < power:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if one_way_power(mid, rate, alpha) >= power else (mid, hi)
    return hi
