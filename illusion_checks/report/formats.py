"""How the report writes numbers: one function per kind, shared by charts, tables and findings."""

from __future__ import annotations

from collections.abc import Sequence

NA = "n/a"


def pct(value: float | None, digits: int = 0) -> str:
    """A share in [0, 1] as a percentage: 0.384 -> '38%'."""
    return NA if value is None else f"{value * 100:.{digits}f}%"


def signed(value: float | None, digits: int = 2) -> str:
    """A signed difference such as ΔPR: 0.14 -> '+0.14'."""
    return NA if value is None else f"{value:+.{digits}f}"


def points(value: float | None, digits: int = 1) -> str:
    """An accuracy difference in percentage points: 0.125 -> '+12.5 pp'."""
    return NA if value is None else f"{value * 100:+.{digits}f} pp"


def rank(value: float | None) -> str:
    """A (median) rank: 3.0 -> '3', 3.5 -> '3.5'."""
    if value is None:
        return NA
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def interval(ci: Sequence[float] | None, fmt=pct) -> str:
    """A 95% interval as '[lo, hi]' in the given format."""
    return NA if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def spec_value(value: float | None, name: str) -> str:
    """A gate value in the format of its metric (ΔPR signed, rates as percentages)."""
    return signed(value) if name == "delta_pr" else pct(value, 1)
