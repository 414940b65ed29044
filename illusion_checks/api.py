"""The Python API: evaluate a reference and its compressed model, gate the summary, optionally write
the results JSON and the HTML report, without pytest.

    from illusion_checks import EvaluationSpec, GateSpec, evaluate

    outcome = evaluate(EvaluationSpec(model="smollm2-135m", compress="wanda:0.5", langs=("en", "sw"), items=50),
                       GateSpec(max_dissociation={"*": 0.15, "sw": 0.2}), json_path="reports/results.json")
    outcome.passed, outcome.results["summary"]["overall"]["dissociation_rate"]

The pytest plugin runs its evaluations through the same pieces (`check_outputs`, `run_evaluation`,
`apply_gates`, `write_outputs`), split over pytest's phases; `evaluate` is them in order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from illusion_checks.atomic import write_json_atomic
from illusion_checks.cache import CACHE_ENV, OutcomeCache, cache_root
from illusion_checks.evaluation import Evaluation, Log, RunStats
from illusion_checks.gates import Gate
from illusion_checks.preflight import check_folder, check_writable
from illusion_checks.results import is_multi_run, primary_run, runs_of
from illusion_checks.spec import EvaluationSpec, GateSpec, Progress
from illusion_checks.sweep import check_search, gate_run, passed, regate_search, run_search, run_sweep


@dataclass(frozen=True)
class EvaluationResult:
    """What `evaluate` returns: the results object (schema v1, with its `gates`), the gate records,
    and what the run did (models loaded, cache hits, phase times)."""

    results: dict[str, Any]
    gates: tuple[Gate, ...]
    stats: RunStats | None = None

    @property
    def passed(self) -> bool:
        """Every gate passed (true when no threshold was set); a search: some level passed."""
        return passed(self.results, self.gates)


def check_outputs(json_path: str | os.PathLike[str] | None, report_path: str | os.PathLike[str] | None,
                  save_compressed: str | None = None, cache_dir: str | None = None, caches: bool = True) -> None:
    """Each output can be written (its folder made, a temp file created there) and the two files
    differ, and the caches are folders that can be written, or a ValueError names the option (or
    `ILLUSION_CHECKS_CACHE`): checked before an evaluation that may take an hour. `caches`: False
    for a run that evaluates nothing (results reloaded from a file)."""
    if caches:
        check_folder("ILLUSION_CHECKS_CACHE" if CACHE_ENV in os.environ else f"the default cache ({CACHE_ENV} unset)",
                     cache_root())
    if caches and cache_dir is not None:
        check_folder("--illusion-cache-dir", cache_dir)
    json_file = Path(json_path).resolve() if json_path is not None else None
    report_file = Path(report_path).resolve() if report_path is not None else None
    if json_file is not None and report_file is not None and (
            report_file == json_file or (report_file.exists() and json_file.exists()
                                         and os.path.samefile(report_file, json_file))):
        raise ValueError(f"--illusion-report and --illusion-json name the same file ({json_file}): "
                         "the report would overwrite the results; give them different paths")
    if json_file is not None:
        check_writable("--illusion-json", json_file)
    if report_file is not None:
        check_writable("--illusion-report", report_file)
    if save_compressed:
        check_writable("--illusion-save-compressed", save_compressed, is_dir=True)


def run_evaluation(spec: EvaluationSpec, progress: Progress | None = None, log: Log | None = None,
                   warn: Log | None = None, gates: GateSpec = GateSpec()) -> tuple[dict[str, Any], RunStats]:
    """The results object and the run's stats: one compressed model (schema v1, no gates yet), or a
    sweep or search (schema v2, each run gated with `gates`: a search needs them to choose). The
    outcome cache is `spec.cache_dir` (default `$ILLUSION_CHECKS_CACHE/results`) unless
    `spec.no_cache`. `warn` hears about unreadable cache entries (default: `warnings.warn`)."""
    check_search(spec, gates)
    cache = OutcomeCache(None if spec.no_cache else (spec.cache_dir or cache_root() / "results"), on_unreadable=warn)
    evaluation = Evaluation(spec, cache, progress, log)
    say = log or (lambda message: None)
    if spec.search:
        results = run_search(evaluation, spec, gates, say)
    elif len(spec.compress_specs) > 1:
        results = run_sweep(evaluation, spec.compress_specs, gates, say)
    else:
        results = evaluation.run()
    return results, evaluation.stats


def apply_gates(results: dict[str, Any], gates: GateSpec) -> list[Gate]:
    """Gate records for the results' summary (each run's, for a sweep or search); also stored in each
    run's `gates` (what the JSON holds)."""
    if not is_multi_run(results):
        return gate_run(results, gates)
    records = [record for run in runs_of(results) for record in gate_run(run, gates)]
    regate_search(results)  # a search's verdict follows its levels' gates
    return records


def write_outputs(results: Mapping[str, Any], json_path: str | os.PathLike[str] | None = None,
                  report_path: str | os.PathLike[str] | None = None) -> None:
    """The results JSON and the self-contained HTML report, each written atomically (when a path is given)."""
    if json_path is not None:
        write_json_atomic(json_path, results)
    if report_path is not None:
        from illusion_checks.report import write_report  # jinja2 loads only when a report is written

        primary, others = primary_run(results)
        write_report(report_path, primary, others, search=results.get("search"))


def evaluate(spec: EvaluationSpec, gates: GateSpec = GateSpec(), *, progress: Progress | None = None,
             log: Log | None = None, json_path: str | os.PathLike[str] | None = None,
             report_path: str | os.PathLike[str] | None = None) -> EvaluationResult:
    """Evaluate `spec` (reference vs compressed, every probe, cached per model), apply `gates`, and write
    the results JSON / HTML report where paths are given. A bad spec or an unwritable output raises a
    ValueError naming the option before any model loads; `progress(phase, done, total)` and `log(message)`
    hear how it goes."""
    if not isinstance(spec, EvaluationSpec) or not isinstance(gates, GateSpec):
        raise TypeError("evaluate(spec, gates) takes an EvaluationSpec and a GateSpec")
    spec.check()
    check_outputs(json_path, report_path, spec.save_compressed, spec.cache_dir)
    results, stats = run_evaluation(spec, progress, log, gates=gates)
    records = apply_gates(results, gates)
    write_outputs(results, json_path, report_path)
    return EvaluationResult(results, tuple(records), stats)
