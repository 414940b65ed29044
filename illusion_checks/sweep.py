"""Several compression specs of one reference in one run: a sweep (`--illusion-compress=A,B,C`) or the
search for the highest sparsity whose gates all pass (`--illusion-search=METHOD:LOW..HIGH`).

The reference is probed once; each spec is compressed, probed and freed in turn (one compressed
model in memory at a time), and each spec's outcomes are cached as they finish, so an interrupted
sweep resumes where it stopped. The results are schema v2 (`results.multi_results`): one v1 results
object per spec (its config, items, summary and gates) under `runs`, and the search under `search`."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from illusion_checks.evaluation import Evaluation
from illusion_checks.gates import Gate, evaluate_gates
from illusion_checks.results import is_multi_run, multi_results, run_label, runs_of
from illusion_checks.search import LevelResult, bisect, monotonicity_violations, parse_search, safe_best
from illusion_checks.spec import EvaluationSpec, GateSpec

Log = Callable[[str], None]


def gate_run(run: dict[str, Any], gates: GateSpec) -> list[Gate]:
    """Gate records for one run's summary, also stored in its `gates`."""
    records = evaluate_gates(run["summary"], gates.max_dissociation, gates.max_delta_pr, gates.min_retention,
                             gates.gate_on, gates.alpha)
    run["gates"] = [gate.to_dict() for gate in records]
    return records


def check_search(spec: EvaluationSpec, gates: GateSpec) -> None:
    """A search looks for the highest level whose gates pass, by bisection, which assumes the gates
    pass at low sparsity and fail at high. Retention does fall as sparsity grows; dissociation does
    not: once items are lost rather than demoted, it falls back toward what MC guessing leaves, so a
    destroyed model can pass a dissociation gate. A search therefore needs a retention gate."""
    if spec.search and gates.gate_on == "mcnemar":
        raise ValueError("--illusion-search chooses a level by --illusion-min-retention, a threshold compared on "
                         "point or ci95; --illusion-gate-on=mcnemar takes none: use point or ci95")
    if spec.search and not gates.min_retention:
        raise ValueError("--illusion-search needs --illusion-min-retention: bisection assumes the gates fail from some "
                         "sparsity on, which retention (the share of both-correct items still produced) does as the "
                         "model breaks, but dissociation does not (a destroyed model's items are lost, not MC-only, so "
                         "its dissociation falls again) and a search on it alone can choose a model that answers "
                         "nothing")


def run_sweep(evaluation: Evaluation, specs: Sequence[str], gates: GateSpec, log: Log) -> dict[str, Any]:
    """Every spec's results, gated (schema v2)."""
    evaluation.check_specs(specs)  # every spec fits the model before anything loads
    runs = []
    for number, spec in enumerate(specs, 1):
        log(f"sweep: {spec} ({number} of {len(specs)})")
        run = evaluation.run_spec(spec)
        records = gate_run(run, gates)
        log(f"{spec}: {_verdict(records)}")
        runs.append(run)
    return multi_results(runs)


def run_search(evaluation: Evaluation, spec: EvaluationSpec, gates: GateSpec, log: Log) -> dict[str, Any]:
    """Bisection over the search grid; each level's results are a run, in order of sparsity."""
    space = parse_search(spec.search or "", spec.search_step)
    levels = space.levels()
    evaluation.check_specs([space.spec(level) for level in levels])
    runs: dict[str, dict[str, Any]] = {}

    def passes(level_spec: str) -> bool:
        log(f"search: running {level_spec} (level {len(runs) + 1} to run; the grid has {len(levels)})")
        run = evaluation.run_spec(level_spec)
        records = gate_run(run, gates)
        runs[level_spec] = run
        log(f"search {level_spec}: {_verdict(records)}")
        return all(gate.passed for gate in records)

    result = bisect(space, passes)
    for violation in result.violations:
        log(f"warning: {violation}")
    log(f"search: the highest level whose gates all pass is {result.best or 'none (even the lowest fails)'}")
    ordered = [runs[space.spec(level)] for level in levels if space.spec(level) in runs]
    return multi_results(ordered, search=result.to_dict())


def _verdict(records: Sequence[Gate]) -> str:
    if not records:
        return "no gates"
    failed = [f"{gate.name}[{gate.lang}]" for gate in records if not gate.passed]
    return f"{len(records) - len(failed)}/{len(records)} gates passed" + (f" (failed: {', '.join(failed)})" if failed else "")


def passed(results: Mapping[str, Any], records: Sequence[Gate]) -> bool:
    """A search passes when a level passes (failing levels are its point); anything else when every gate does."""
    search = results.get("search") if is_multi_run(results) else None
    if search is not None:
        return search.get("best") is not None
    return all(gate.passed for gate in records)


def regate_search(results: dict[str, Any]) -> None:
    """After the gates are applied again (`--illusion-from-results` with other thresholds): each level
    passes by its new gates, the chosen level is the highest that passes with every level run below
    it passing too (`safe_best`), and monotonicity is checked again on them."""
    search = results.get("search")
    if search is None:
        return
    verdicts = {run_label(run): all(gate["passed"] for gate in run["gates"]) for run in runs_of(results)}
    for level in search["levels"]:
        level["passed"] = verdicts.get(level["spec"], level["passed"])
    levels = [LevelResult(level["spec"], level["level"], level["passed"]) for level in search["levels"]]
    search["best"] = safe_best(levels)
    search["monotonicity_violations"] = list(monotonicity_violations(levels))
