"""The plugin's session object: obtains results once per run, makes the tests, writes the outputs."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pytest

from illusion_checks.config import IllusionConfig
from illusion_checks.gates import Gate, evaluate_gates

WORKER_KEY = "illusion_results_path"


@dataclass(frozen=True)
class IllusionResults:
    """What user-written tests get from the `illusion_results` fixture."""

    raw: Mapping[str, Any]

    @property
    def items(self) -> list[Mapping[str, Any]]:
        return self.raw["items"]

    @property
    def summary(self) -> Mapping[str, Any]:
        return self.raw["summary"]

    @property
    def config(self) -> Mapping[str, Any]:
        return self.raw["config"]

    @property
    def gates(self) -> list[Mapping[str, Any]]:
        return self.raw.get("gates", [])

    def fates(self, lang: str | None = None) -> dict[str, int]:
        """Fate counts for one language, or overall."""
        block = self.summary["overall"] if lang is None else self.summary["per_language"][lang]
        return dict(block["fates"])

    def items_with_fate(self, fate: str, lang: str | None = None) -> list[Mapping[str, Any]]:
        """Both-correct items with this fate (optionally in one language)."""
        return [i for i in self.items if i["fate"] == fate and (lang is None or i["lang"] == lang)]


class IllusionSession:
    """Registered as a plugin when `--illusion-model` or `--illusion-from-results` is given."""

    def __init__(self, cfg: IllusionConfig, config: pytest.Config) -> None:
        self.cfg, self.config = cfg, config
        self.results: dict[str, Any] | None = None
        self.gates: list[Gate] = []
        self.stats: Any = None
        self.elapsed = 0.0
        self.json_path = Path(cfg.json).resolve()
        self.report_path = Path(cfg.report).resolve()

    # -- obtaining results ---------------------------------------------------------------
    def prepare(self) -> None:
        """Evaluate (or load) once; on an xdist worker, read what the controller wrote."""
        from illusion_checks.results import ResultsError, load_results

        start = time.perf_counter()
        workerinput = getattr(self.config, "workerinput", None)
        try:
            if workerinput is not None and WORKER_KEY in workerinput:
                self.results = load_results(workerinput[WORKER_KEY])
            else:
                self._check_outputs()  # before an evaluation that may take an hour
                self.results = load_results(self.cfg.from_results) if self.cfg.from_results else self._evaluate()
        except (ResultsError, ValueError) as error:
            raise pytest.UsageError(f"illusion-checks: {error}") from error
        self.gates = evaluate_gates(self.results["summary"], self.cfg.max_dissociation, self.cfg.max_delta_pr,
                                    self.cfg.min_retention, self.cfg.gate_on)
        self.results["gates"] = [gate.to_dict() for gate in self.gates]
        if workerinput is None:
            self._write_outputs()
        self.elapsed = time.perf_counter() - start

    def _check_outputs(self) -> None:
        """Each output path can be written (its folder made, a temp file created there), or a ValueError names it."""
        from illusion_checks.preflight import check_writable

        check_writable("--illusion-json", self.json_path)
        check_writable("--illusion-report", self.report_path)
        if self.cfg.save_compressed and not self.cfg.from_results:
            check_writable("--illusion-save-compressed", self.cfg.save_compressed, is_dir=True)

    def _evaluate(self) -> dict[str, Any]:
        from illusion_checks.cache import OutcomeCache
        from illusion_checks.models import cache_root
        from illusion_checks.progress import progress_display
        from illusion_checks.run import Evaluation

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        cache = OutcomeCache(None if self.cfg.no_cache else (self.cfg.cache_dir or cache_root() / "results"),
                             on_unreadable=self._warn)
        capman = self.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman else nullcontext():
            with progress_display(self.config) as progress:
                evaluation = Evaluation(self.cfg, cache, progress, self._log)
                results = evaluation.run()
        self.stats = evaluation.stats
        return results

    def _log(self, message: str) -> None:
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None and self.config.get_verbosity() >= 0:
            reporter.write_line(f"illusion-checks: {message}")

    def _warn(self, message: str) -> None:
        # sessionstart has no warnings capture around it: say it on the terminal now, and put it
        # in pytest's warnings summary (where -W error / filterwarnings apply to it).
        self._log(f"warning: {message.removeprefix('illusion-checks: ')}")
        self.config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)

    def _write_outputs(self) -> None:
        from illusion_checks.report import write_report
        from illusion_checks.results import write_json_atomic

        assert self.results is not None
        write_json_atomic(self.json_path, self.results)
        # write_report writes a temp file beside the target, so the folder must exist.
        self.report_path.parent.mkdir(parents=True, exist_ok=True)
        write_report(self.report_path, self.results)

    # -- pytest glue -----------------------------------------------------------------------
    def configure_node(self, node: Any) -> None:
        """Hand workers the results file so no worker loads a model."""
        node.workerinput[WORKER_KEY] = str(self.json_path)

    def collect(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        """Collect our groups through pytest's collection hooks, so the terminal's "collected N
        items", --collect-only's count and -k's "selected" count include them."""
        from illusion_checks.pytest_items import build_groups

        assert self.results is not None
        hook = session.ihook
        for group in build_groups(session, self.results, self.gates, self.cfg.item_policy):
            hook.pytest_collectstart(collector=group)
            report = hook.pytest_make_collect_report(collector=group)
            hook.pytest_collectreport(report=report)
            items.extend(node for node in report.result if isinstance(node, pytest.Item))

    def terminal_summary(self, reporter: Any) -> None:
        from illusion_checks.terminal import summary_table

        if self.results is None or hasattr(self.config, "workerinput"):
            return
        summary_table(reporter, self.results, self.gates)
        if self.stats is not None:
            cached = [role for role in ("reference", "compressed") if getattr(self.stats, f"{role}_cached")]
            reporter.write_line(f"illusion-checks: evaluated in {self.elapsed:.1f} s; models loaded: "
                                f"{self.stats.models_loaded}; from cache: {', '.join(cached) or 'nothing'}")
            if self.stats.phase_seconds:
                phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.stats.phase_seconds.items())
                reporter.write_line(f"illusion-checks: phases: {phases}")
        elif self.cfg.from_results:
            reporter.write_line(f"illusion-checks: gates re-applied to {Path(self.cfg.from_results).resolve()}; "
                                "models loaded: 0")
        reporter.write_line(f"illusion-checks report: {self.report_path}")
        reporter.write_line(f"illusion-checks results: {self.json_path}")
