"""The compression-level search on crafted pass/fail patterns: no model, only predicates over the grid."""

from __future__ import annotations

import ast
import itertools
import json
import math
from pathlib import Path

import pytest

from illusion_checks.compress.spec import parse_spec
from illusion_checks.search import (LevelResult, SearchResult, SearchSpace, bisect, monotonicity_violations,
                                    parse_search, safe_best)

WANDA = parse_search("wanda:0.3..0.8")  # 11 levels: 0.3, 0.35, ..., 0.8


def _level(spec: str) -> float:
    return float(spec.split(":")[1])


class Counting:
    """A predicate over specs that records every call, so a test can count and spot repeats."""

    def __init__(self, passes_at):
        self.passes_at, self.calls = passes_at, []

    def __call__(self, spec: str) -> bool:
        self.calls.append(spec)
        return self.passes_at(_level(spec))


def _threshold(t: float) -> Counting:
    return Counting(lambda level: level <= t + 1e-9)


# --- the grid and spec formatting ---------------------------------------------------------------------

def test_the_default_grid_runs_from_low_to_high_inclusive_in_rounded_steps():
    assert WANDA == SearchSpace(method="wanda", low=0.3, high=0.8, step=0.05)
    assert WANDA.levels() == (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


def test_float_drift_does_not_lose_or_add_a_level():
    space = parse_search("magnitude:0.1..0.9", step=0.1)
    assert space.levels() == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert [space.spec(x) for x in space.levels()][-1] == "magnitude:0.9"


def test_a_step_that_does_not_divide_the_range_stops_at_the_last_level_below_high():
    assert parse_search("wanda:0.3..0.8", step=0.15).levels() == (0.3, 0.45, 0.6, 0.75)
    assert parse_search("wanda:0.3..0.8", step="0.3").levels() == (0.3, 0.6)


def test_a_step_equal_to_the_range_gives_both_ends():
    assert parse_search("sparsegpt:0.1..0.7", step=0.6).levels() == (0.1, 0.7)
    assert parse_search("wanda:0.3..0.8", step="0.5").levels() == (0.3, 0.8)


def test_the_step_may_come_as_text_and_the_method_in_capitals():
    assert parse_search(" WANDA:0.3..0.8 ", step=" 0.05 ") == WANDA
    assert parse_search("wanda: 0.3 .. 0.8", step="5e-2").levels() == WANDA.levels()


def test_specs_are_formatted_minimally_and_as_the_spec_grammar_writes_them():
    assert WANDA.spec(0.35) == "wanda:0.35"
    assert WANDA.spec(0.5) == "wanda:0.5"
    assert WANDA.spec(0.3 + 7 * 0.05) == "wanda:0.65"  # 0.6500000000000001 before rounding
    assert parse_search("magnitude:0.1..0.9").spec(0.1) == "magnitude:0.1"
    for space in (WANDA, parse_search("magnitude:0.1..0.9", "0.1"), parse_search("sparsegpt:0.01..0.99", "0.01")):
        for level in space.levels():
            spec = space.spec(level)
            assert str(parse_spec(spec)) == spec and parse_spec(spec).sparsity == level


# --- bisection on threshold predicates ----------------------------------------------------------------

SPACES = [WANDA, parse_search("magnitude:0.1..0.9", "0.1"), parse_search("wanda:0.3..0.8", "0.15"),
          parse_search("wanda:0.3..0.8", "0.5"), parse_search("sparsegpt:0.2..0.6", "0.2"),
          parse_search("wanda:0.05..0.95", "0.01")]


@pytest.mark.parametrize("space", SPACES, ids=lambda s: f"{s.method}:{s.low}..{s.high}/{s.step}")
def test_a_threshold_is_found_exactly_with_few_evaluations_and_no_repeats(space):
    grid = space.levels()
    bound = 2 + math.ceil(math.log2(len(grid)))
    thresholds = [space.low - 0.1, space.low - 1e-4, *grid, *(x + space.step / 2 for x in grid), space.high + 0.1]
    for t in thresholds:
        predicate, heard = _threshold(t), []
        result = bisect(space, predicate, on_level=lambda spec, ok: heard.append((spec, ok)))
        passing = [x for x in grid if x <= t + 1e-9]
        assert result.best == (space.spec(max(passing)) if passing else None), t
        assert len(predicate.calls) == len(set(predicate.calls)), f"a level ran twice: {predicate.calls}"
        if not passing:
            assert predicate.calls == [space.spec(space.low)]
        elif t >= grid[-1]:  # the top of the grid, which is below HIGH when the step does not divide the range
            assert predicate.calls == [space.spec(grid[0]), space.spec(grid[-1])]
        else:
            assert len(predicate.calls) <= bound
        assert [r.spec for r in result.levels] == predicate.calls
        assert heard == [(r.spec, r.passed) for r in result.levels]
        assert result.violations == ()


def test_eleven_levels_take_at_most_six_evaluations():
    worst = max(len(bisect(WANDA, p).levels) for p in (_threshold(t / 100) for t in range(20, 90)))
    assert worst == 6 == 2 + math.ceil(math.log2(11))


def test_the_evaluation_order_is_low_then_high_then_bisection():
    predicate = _threshold(0.55)
    result = bisect(WANDA, predicate)
    assert predicate.calls == ["wanda:0.3", "wanda:0.8", "wanda:0.55", "wanda:0.65", "wanda:0.6"]
    assert result.best == "wanda:0.55"
    assert result.levels[0] == LevelResult(spec="wanda:0.3", level=0.3, passed=True)


def test_the_predicates_answer_is_taken_as_a_bool():
    result = bisect(WANDA, lambda spec: 1 if _level(spec) <= 0.4 else 0)
    assert result.best == "wanda:0.4" and all(type(r.passed) is bool for r in result.levels)


# --- monotonicity -------------------------------------------------------------------------------------

def test_a_non_monotone_pattern_between_the_levels_run_goes_unseen():
    passes_at = {0.3, 0.5, 0.7}  # 0.5 and 0.7 pass above failing 0.35..0.45, but bisection never runs them
    predicate = Counting(lambda level: level in passes_at)
    result = bisect(WANDA, predicate)
    assert predicate.calls == ["wanda:0.3", "wanda:0.8", "wanda:0.55", "wanda:0.4", "wanda:0.35"]
    assert result.best == "wanda:0.3" and result.violations == ()


def test_failing_lowest_level_ends_the_search_even_if_higher_levels_would_pass():
    predicate = Counting(lambda level: level != 0.3)
    result = bisect(WANDA, predicate)
    assert predicate.calls == ["wanda:0.3"] and result.best is None and result.violations == ()


def test_passing_highest_level_is_taken_without_looking_between():
    predicate = Counting(lambda level: level in (0.3, 0.8))
    result = bisect(WANDA, predicate)
    assert predicate.calls == ["wanda:0.3", "wanda:0.8"] and result.best == "wanda:0.8"


def test_every_pattern_on_eleven_levels_runs_each_level_once_and_ends_on_a_pass_next_to_a_fail():
    """Exhaustive: bisection only runs levels between its highest pass and lowest failure, so what it
    runs is always monotone; the check can only fire on a wider set of results."""
    grid = WANDA.levels()
    for pattern in itertools.product((False, True), repeat=len(grid)):
        answer = dict(zip(grid, pattern))
        predicate = Counting(answer.__getitem__)
        result = bisect(WANDA, predicate)
        assert len(predicate.calls) == len(set(predicate.calls)) <= 6
        assert result.violations == ()
        if not pattern[0]:
            assert result.best is None
            continue
        best = grid.index(_level(result.best))
        assert answer[grid[best]] and (best == len(grid) - 1 or not answer[grid[best + 1]])
        assert (best == len(grid) - 1) or WANDA.spec(grid[best + 1]) in predicate.calls


def test_a_passing_level_above_a_failing_one_is_named_with_both_specs():
    levels = [LevelResult("wanda:0.3", 0.3, True), LevelResult("wanda:0.6", 0.6, True),
              LevelResult("wanda:0.55", 0.55, False), LevelResult("wanda:0.8", 0.8, False)]
    assert monotonicity_violations(levels) == (
        "wanda:0.6 passes but the lower wanda:0.55 fails: the gates are not monotone in sparsity here; "
        "the search assumed they are",)


def test_every_violating_pair_gets_its_own_line():
    levels = [LevelResult(f"magnitude:{x:g}", x, ok) for x, ok in
              ((0.1, False), (0.2, True), (0.3, False), (0.4, True), (0.5, False))]
    found = monotonicity_violations(levels)
    pairs = [(m.split()[0], m.split()[5]) for m in found]
    assert pairs == [("magnitude:0.2", "magnitude:0.1"), ("magnitude:0.4", "magnitude:0.1"),
                     ("magnitude:0.4", "magnitude:0.3")]
    assert all("\n" not in m for m in found)
    assert monotonicity_violations([]) == ()
    assert monotonicity_violations([r for r in levels if r.level <= 0.1 or r.level >= 0.4]) == found[1:2]


# --- to_dict ------------------------------------------------------------------------------------------

def test_to_dict_sorts_levels_keeps_the_evaluation_order_and_is_json_ready():
    data = bisect(WANDA, _threshold(0.55)).to_dict()
    assert data == {
        "method": "wanda", "low": 0.3, "high": 0.8, "step": 0.05,
        "levels": [{"spec": "wanda:0.3", "level": 0.3, "passed": True},
                   {"spec": "wanda:0.55", "level": 0.55, "passed": True},
                   {"spec": "wanda:0.6", "level": 0.6, "passed": False},
                   {"spec": "wanda:0.65", "level": 0.65, "passed": False},
                   {"spec": "wanda:0.8", "level": 0.8, "passed": False}],
        "evaluated": ["wanda:0.3", "wanda:0.8", "wanda:0.55", "wanda:0.65", "wanda:0.6"],
        "best": "wanda:0.55",
        "monotonicity_violations": [],
    }
    assert json.loads(json.dumps(data)) == data


def test_to_dict_with_no_passing_level_and_with_violations():
    assert bisect(WANDA, lambda spec: False).to_dict()["best"] is None
    levels = (LevelResult("wanda:0.6", 0.6, True), LevelResult("wanda:0.55", 0.55, False))
    result = SearchResult(space=WANDA, levels=levels, best="wanda:0.6", violations=monotonicity_violations(levels))
    data = result.to_dict()
    assert data["evaluated"] == ["wanda:0.6", "wanda:0.55"]
    assert [x["spec"] for x in data["levels"]] == ["wanda:0.55", "wanda:0.6"]
    assert data["monotonicity_violations"] == [
        "wanda:0.6 passes but the lower wanda:0.55 fails: the gates are not monotone in sparsity here; "
        "the search assumed they are"]


# --- parse errors -------------------------------------------------------------------------------------

SEARCH_ERRORS = [
    ("wanda", "is not METHOD:LOW..HIGH (e.g. wanda:0.3..0.8)"),
    ("wanda:0.3-0.8", "is not METHOD:LOW..HIGH"),
    ("wanda:0.3..0.8..0.9", "is not METHOD:LOW..HIGH"),
    ("wanda:a..0.8", "is not METHOD:LOW..HIGH"),
    (":0.3..0.8", "is not METHOD:LOW..HIGH"),
    ("", "is not METHOD:LOW..HIGH"),
    ("wanda:2:4", "is not METHOD:LOW..HIGH"),
    ("foo:0.3..0.8", "unknown sparsity method 'foo'; search one of magnitude, wanda, sparsegpt"),
    ("int8:0.3..0.8", "unknown sparsity method 'int8'"),
    ("rtn-int4:0.3..0.8", "quantization method"),
    ("bnb-nf4:0.3..0.8", "quantization method"),
    ("wanda:0.8..0.3", "LOW (0.8) must be below HIGH (0.3)"),
    ("wanda:0.5..0.5", "must be below HIGH"),
    ("wanda:0..0.5", "strictly between 0 and 1"),
    ("wanda:0.3..1", "strictly between 0 and 1"),
    ("wanda:-0.1..0.5", "strictly between 0 and 1"),
    ("wanda:0.3..1.5", "strictly between 0 and 1"),
    ("wanda:nan..0.5", "strictly between 0 and 1"),
    ("wanda:0.3..inf", "strictly between 0 and 1"),
]


@pytest.mark.parametrize("text, why", SEARCH_ERRORS, ids=[t or "empty" for t, _ in SEARCH_ERRORS])
def test_a_bad_search_is_one_line_naming_the_option_and_value(text, why):
    with pytest.raises(ValueError) as error:
        parse_search(text)
    message = str(error.value)
    assert message.startswith("--illusion-search: ") and "\n" not in message
    assert repr(text) in message and why in message


def test_the_quantization_refusal_says_what_can_be_searched():
    with pytest.raises(ValueError, match="no sparsity to search; search one of magnitude, wanda, sparsegpt"):
        parse_search("rtn-int4:0.3..0.8")


def test_a_search_that_is_not_a_string_is_refused():
    with pytest.raises(ValueError, match="^--illusion-search: 0.5 is not METHOD:LOW..HIGH"):
        parse_search(0.5)


STEP_ERRORS = [("abc", "is not a number"), ("", "is not a number"), (None, "is not a number"),
               (True, "is not a number"), ("0", "must be a number > 0"), (-0.05, "must be a number > 0"),
               ("nan", "must be a number > 0"), ("inf", "must be a number > 0"), ("1e-9", "finer than"),
               (0.6, "larger than the range 0.3..0.8"), ("0.51", "must be > 0 and <= HIGH - LOW")]


@pytest.mark.parametrize("step, why", STEP_ERRORS, ids=[repr(s) for s, _ in STEP_ERRORS])
def test_a_bad_step_is_one_line_naming_the_option_and_value(step, why):
    with pytest.raises(ValueError) as error:
        parse_search("wanda:0.3..0.8", step=step)
    message = str(error.value)
    assert message.startswith("--illusion-search-step: ") and "\n" not in message
    assert repr(step) in message and why in message


def test_the_search_module_is_engine_free_and_plugin_free():
    source = Path(__file__).resolve().parents[1] / "illusion_checks" / "search.py"
    names = [a.name for n in ast.walk(ast.parse(source.read_text(encoding="utf-8"))) if isinstance(n, ast.Import)
             for a in n.names]
    names += [n.module for n in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
              if isinstance(n, ast.ImportFrom) and n.module]
    assert all(name.split(".")[0] not in ("torch", "transformers", "vllm") for name in names)
    assert all(not name.startswith("illusion_checks.") or name == "illusion_checks.compress.spec" for name in names)


# Per level of magnitude:0.1..0.7 (step 0.2): the fates of 10 items both models answer (FF and MC)
# before compression. Dissociation (MC-only share) rises, then falls again once items are lost.
DESTROYED = {"magnitude:0.1": {"kept": 10}, "magnitude:0.3": {"kept": 8, "mc_only": 2},
             "magnitude:0.5": {"kept": 5, "mc_only": 5}, "magnitude:0.7": {"lost": 8, "mc_only": 2}}


def _crafted_summary(spec: str) -> dict:
    from illusion_checks.metrics import summarize
    from tests.helpers.rows import item, outcome

    compressed = {"kept": outcome(1, 1), "mc_only": outcome(0, 1), "lost": outcome(0, 0)}
    fates = [fate for fate, n in DESTROYED[spec].items() for _ in range(n)]
    return summarize([item("en", f"{spec}/{k}", outcome(1, 1), compressed[fate]) for k, fate in enumerate(fates)],
                     n_resamples=0)


def test_a_search_never_chooses_the_destroyed_level_whose_dissociation_fell_again():
    """The crafted non-monotone case: at magnitude:0.7 eight of ten items are lost, so dissociation
    (0.2) passes a 0.5 gate again while retention is 0. A search on dissociation alone is refused
    before anything runs (before, bisection ran 0.1 and 0.7 and chose 0.7); with a retention gate
    it runs 0.1, 0.7, 0.3, 0.5 and chooses 0.3, every level it ran below passing."""
    from illusion_checks import EvaluationSpec
    from illusion_checks.gates import evaluate_gates
    from illusion_checks.spec import GateSpec
    from illusion_checks.sweep import check_search

    spec = EvaluationSpec(model="smollm2-135m", search="magnitude:0.1..0.7", search_step=0.2)
    dissociation_only = GateSpec(max_dissociation=0.5)
    with pytest.raises(ValueError, match="--illusion-search needs --illusion-min-retention"):
        check_search(spec, dissociation_only)
    gates = GateSpec(max_dissociation=0.5, min_retention=0.7)
    check_search(spec, gates)

    def passes(level: str, gates: GateSpec = gates) -> bool:
        records = evaluate_gates(_crafted_summary(level), gates.max_dissociation, gates.max_delta_pr,
                                 gates.min_retention, gates.gate_on)
        return all(gate.passed for gate in records)

    space = parse_search("magnitude:0.1..0.7", 0.2)
    assert passes("magnitude:0.7", dissociation_only)  # the trap: the destroyed level passes dissociation
    result = bisect(space, passes)
    assert [r.spec for r in result.levels] == ["magnitude:0.1", "magnitude:0.7", "magnitude:0.3", "magnitude:0.5"]
    assert result.best == "magnitude:0.3" and not result.violations
    # Bisection cannot see the trap by itself (on dissociation alone it runs two levels and both pass):
    # hence the refusal. And a choice never sits above a failure it ran (a re-gated search's levels).
    assert bisect(space, lambda level: passes(level, dissociation_only)).best == "magnitude:0.7"
    assert safe_best([LevelResult("magnitude:0.1", 0.1, True), LevelResult("magnitude:0.5", 0.5, False),
                      LevelResult("magnitude:0.7", 0.7, True)]) == "magnitude:0.1"
