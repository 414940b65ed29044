"""The compression-level search behind `--illusion-search=METHOD:LOW..HIGH`: the highest sparsity whose gates pass.

    space = parse_search("wanda:0.3..0.8", step="0.05")   # ValueError naming the option on a bad one
    result = bisect(space, passes=lambda spec: run_gates(spec))
    result.best                                            # e.g. "wanda:0.55", or None
    json.dumps(result.to_dict())

Evaluating one level (compress a model, probe it, gate it) is expensive, so the search bisects over
the grid and never evaluates a level twice. Engine-free: the standard library and the spec grammar only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from illusion_checks.compress.spec import LLMC, PRUNING_METHODS, QUANT_METHODS, parse_spec

SEARCH_OPTION, STEP_OPTION = "--illusion-search", "--illusion-search-step"
FORM = "METHOD:LOW..HIGH (e.g. wanda:0.3..0.8)"
# Levels are rounded to this many decimals, so 0.3 + 7 * 0.05 is 0.65 and not 0.6500000000000001;
# a step finer than one unit of it would put two grid points on the same rounded level.
DECIMALS = 6
MIN_STEP = 10.0 ** -DECIMALS
# Slack for float division and subtraction: (0.8 - 0.3) / 0.05 may come out as 9.999999999999998.
EPSILON = 1e-9


@dataclass(frozen=True)
class SearchSpace:
    """One sparsity method and the grid of levels to search: low to high inclusive in `step` increments."""

    method: str
    low: float
    high: float
    step: float

    def levels(self) -> tuple[float, ...]:
        """The grid, rounded to DECIMALS; it stops at the last level <= high when step does not divide the range."""
        count = math.floor((self.high - self.low) / self.step + EPSILON) + 1
        grid = (round(self.low + i * self.step, DECIMALS) for i in range(count))
        return tuple(level for level in grid if level <= self.high + EPSILON)

    def spec(self, level: float) -> str:
        """The compression spec for one level, formatted minimally (`wanda:0.35`)."""
        # `:g` after rounding is the form CompressionSpec.__str__ writes, so both name a level alike.
        return f"{self.method}:{round(level, DECIMALS):g}"


@dataclass(frozen=True)
class LevelResult:
    """One evaluated level: its spec, its sparsity and whether every gate passed."""

    spec: str
    level: float
    passed: bool


@dataclass(frozen=True)
class SearchResult:
    """What the search ran, in evaluation order, the best passing spec and any monotonicity violations seen."""

    space: SearchSpace
    levels: tuple[LevelResult, ...]
    best: str | None
    violations: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: levels sorted by sparsity, plus the order they were evaluated in."""
        return {
            "method": self.space.method,
            "low": self.space.low,
            "high": self.space.high,
            "step": self.space.step,
            "levels": [{"spec": r.spec, "level": r.level, "passed": r.passed}
                       for r in sorted(self.levels, key=lambda r: r.level)],
            "evaluated": [r.spec for r in self.levels],
            "best": self.best,
            "monotonicity_violations": list(self.violations),
        }


def _form_error(text: object) -> ValueError:
    return ValueError(f"{SEARCH_OPTION}: {text!r} is not {FORM}")


def _split(text: object) -> tuple[str, float, float]:
    """METHOD, LOW and HIGH out of `METHOD:LOW..HIGH`, or the form error."""
    if not isinstance(text, str):
        raise _form_error(text)
    method, colon, bounds = text.strip().partition(":")
    if method.strip().lower() == LLMC:
        raise ValueError(f"{SEARCH_OPTION}: {text!r}: the search grid runs the tool's own methods "
                         f"({', '.join(PRUNING_METHODS)}); compare llm-compressor levels as a sweep "
                         "(--illusion-compress=llmc:wanda:0.3,llmc:wanda:0.5)")
    parts = bounds.split("..")
    if not colon or not method.strip() or len(parts) != 2:
        raise _form_error(text)
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise _form_error(text) from None
    return method.strip().lower(), low, high


def _check_method(text: str, method: str, low: float) -> None:
    """Refuse what cannot be searched: quantization (no fraction to vary) and anything parse_spec rejects."""
    searchable = ", ".join(PRUNING_METHODS)
    if method in QUANT_METHODS:
        raise ValueError(f"{SEARCH_OPTION}: {text!r} names {method}, a quantization method with no sparsity "
                         f"to search; search one of {searchable}")
    try:
        spec = parse_spec(f"{method}:{low}")
    except ValueError:
        # LOW is already known to lie in (0, 1), so the grammar refused the method; its own message
        # lists N:M and quantization forms, which a search cannot take, so it is not passed on.
        raise ValueError(f"{SEARCH_OPTION}: {text!r}: unknown sparsity method {method!r}; "
                         f"search one of {searchable}") from None
    # Defensive: should the grammar grow a method that takes a fraction but is not unstructured pruning.
    if not spec.is_pruning or spec.sparsity is None:
        raise ValueError(f"{SEARCH_OPTION}: {text!r}: {method} is not an unstructured sparsity method; "
                         f"search one of {searchable}")


def _parse_step(step: float | str, low: float, high: float) -> float:
    """The step as a float in [MIN_STEP, high - low]; it may come as text from the command line."""
    if isinstance(step, bool):  # bool is an int to Python, never a step a user meant
        raise ValueError(f"{STEP_OPTION}: {step!r} is not a number")
    try:
        value = float(step.strip() if isinstance(step, str) else step)
    except (TypeError, ValueError):
        raise ValueError(f"{STEP_OPTION}: {step!r} is not a number") from None
    if not value > 0 or not math.isfinite(value):  # `not >` also rejects nan
        raise ValueError(f"{STEP_OPTION}: {step!r} must be a number > 0")
    if value < MIN_STEP:
        raise ValueError(f"{STEP_OPTION}: {step!r} is finer than the grid's precision of {MIN_STEP:g}")
    if value > high - low + EPSILON:
        raise ValueError(f"{STEP_OPTION}: {step!r} is larger than the range {low:g}..{high:g} "
                         f"({high - low:g}); it must be > 0 and <= HIGH - LOW")
    return value


def parse_search(text: str, step: float | str = 0.05) -> SearchSpace:
    """Parse `--illusion-search` and `--illusion-search-step` into a SearchSpace; one-line ValueError on a bad one."""
    method, low, high = _split(text)
    if not (0.0 < low < 1.0 and 0.0 < high < 1.0):  # also rejects nan and inf
        raise ValueError(f"{SEARCH_OPTION}: {text!r}: LOW and HIGH must lie strictly between 0 and 1")
    if not low < high:
        raise ValueError(f"{SEARCH_OPTION}: {text!r}: LOW ({low:g}) must be below HIGH ({high:g})")
    _check_method(text, method, low)
    return SearchSpace(method=method, low=low, high=high, step=_parse_step(step, low, high))


def monotonicity_violations(levels: tuple[LevelResult, ...] | list[LevelResult]) -> tuple[str, ...]:
    """One message for every pair of evaluated levels where a passing level lies above a failing one."""
    ordered = sorted(levels, key=lambda r: r.level)
    return tuple(f"{above.spec} passes but the lower {below.spec} fails: the gates are not monotone "
                 "in sparsity here; the search assumed they are"
                 for above in ordered if above.passed
                 for below in ordered if not below.passed and below.level < above.level)


def safe_best(levels: Sequence[LevelResult]) -> str | None:
    """The chosen level among those run: the highest that passes with every level run below it
    passing too (None when the lowest run fails). A pass above a failure is never chosen: the gates
    were not monotone there, and the failure below says the model broke on the way."""
    best = None
    for result in sorted(levels, key=lambda r: r.level):
        if not result.passed:
            break
        best = result.spec
    return best


def bisect(space: SearchSpace, passes: Callable[[str], bool],
           on_level: Callable[[str, bool], None] | None = None) -> SearchResult:
    """The highest grid level whose gates pass, found by bisection; each level is evaluated at most once.

    The search assumes the gates pass at low sparsity and fail at high sparsity. It evaluates the
    lowest level (a failure ends the search with best None), then the highest (a pass makes it the
    best), then bisects between the highest passing and the lowest failing level until they are
    adjacent. `on_level(spec, passed)` hears of each evaluation as it happens.

    Monotonicity is checked only on the levels actually run, so a non-monotone pattern between them
    goes unseen. Bisection itself only ever runs levels strictly between its highest pass and its
    lowest failure, so on its own runs every pass lies below every failure; `violations` is a guard,
    and `monotonicity_violations` applied to a wider set (say, every level a caller has cached across
    searches) is where a broken assumption shows.
    """
    grid = space.levels()
    seen: dict[int, LevelResult] = {}

    def run(index: int) -> bool:
        # The caller caches too, but a search that asked twice would still be a bug here.
        if index in seen:
            raise AssertionError(f"the search evaluated {space.spec(grid[index])} twice")
        spec = space.spec(grid[index])
        passed = bool(passes(spec))
        seen[index] = LevelResult(spec=spec, level=grid[index], passed=passed)
        if on_level is not None:
            on_level(spec, passed)
        return passed

    last = len(grid) - 1
    if run(0) and last > 0 and not run(last):
        good, bad = 0, last  # invariant: grid[good] passed, grid[bad] failed
        while bad - good > 1:
            middle = (good + bad) // 2
            if run(middle):
                good = middle
            else:
                bad = middle
    evaluated = tuple(seen.values())  # dicts keep insertion order: the order of evaluation
    # The choice: the highest level run that passes with every level run below it passing (bisection
    # ends with it at `good`, or at the top level when that passed).
    return SearchResult(space=space, levels=evaluated, best=safe_best(evaluated),
                        violations=monotonicity_violations(evaluated))
