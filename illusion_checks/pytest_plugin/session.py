"""The plugin's session object: makes the tests, obtains results once per run (only when a generated
test will run, or a test asks for the results), writes the outputs."""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from illusion_checks.pytest_plugin.config import IllusionConfig
from illusion_checks.pytest_plugin.progress import duration
from illusion_checks.gates import OVERALL, Gate
from illusion_checks.pytest_plugin.selection import Named, Plan
from illusion_checks.served import RunError

WORKER_KEY = "illusion_results_path"
# The exit status of a run whose evaluation could not finish (a server died or stalled): pytest's
# "interrupted", distinct from a failed gate (1) and a usage error (4).
RUN_FAILED = pytest.ExitCode.INTERRUPTED
# Options under which pytest runs no test: the generated tests are listed, never evaluated.
RUNS_NO_TEST = {"collectonly": "--collect-only lists the tests that could run", "showfixtures": "--fixtures runs no test",
                "show_fixtures_per_test": "--fixtures-per-test runs no test", "setupplan": "--setup-plan runs no test",
                "setuponly": "--setup-only runs no test"}


@dataclass(frozen=True)
class IllusionResults:
    """What user-written tests get from the `illusion_results` fixture: one compressed run (of a sweep
    or search: the chosen level's, else the first spec's), every run, and the search."""

    raw: Mapping[str, Any]
    runs: tuple["IllusionResults", ...] = ()
    search: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, results: Mapping[str, Any]) -> "IllusionResults":
        from illusion_checks.sweep import primary_run, runs_of

        if not results.get("runs"):
            return cls(results, (cls(results),))
        return cls(primary_run(results)[0], tuple(cls(run) for run in runs_of(results)), results.get("search"))

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

    def __init__(self, cfg: IllusionConfig, config: pytest.Config, named: Named) -> None:
        self.cfg, self.config, self.named = cfg, config, named
        self.results: dict[str, Any] | None = None
        self.gates: list[Gate] = []
        self.stats: Any = None
        self.elapsed = 0.0
        self.json_path = Path(cfg.json).resolve()
        self.report_path = Path(cfg.report).resolve()
        self.published = False
        self.unpublished_because: str | None = None  # why a run ended without results, for the summary
        self._pending: list[pytest.CollectReport] = []  # stand-ins, until collection settles
        self._writing = threading.Lock()  # progress heartbeats write from their own thread

    # -- obtaining results ---------------------------------------------------------------
    def prepare(self) -> None:
        """Evaluate (or load) once and apply the gates; on an xdist worker, read what the controller
        wrote. Writes nothing."""
        from illusion_checks.api import apply_gates
        from illusion_checks.results import ResultsError, load_results

        if self.results is not None:
            return
        workerinput = getattr(self.config, "workerinput", None)
        try:
            if workerinput is not None and WORKER_KEY in workerinput:
                self.results = load_results(workerinput[WORKER_KEY])
            else:
                self.results = self._reload() if self.cfg.from_results else self._evaluate()
        except (ResultsError, ValueError) as error:
            raise pytest.UsageError(f"illusion-checks: {error}") from error
        except RunError as error:  # a server or engine worker failed mid-run: nothing was written
            from illusion_checks.pytest_plugin import ci_summary

            message = f"illusion-checks: the evaluation could not finish: {error}"
            self._to_github([ci_summary.error_line(message, "illusion-checks run failed")],
                            lambda: ci_summary.failure_summary(message))
            pytest.exit(message, returncode=RUN_FAILED)
        self.gates = apply_gates(self.results, self.cfg.gates)

    def publish(self) -> None:
        """Obtain the results and write the JSON and the report, once per run (an xdist worker only reads)."""
        if self.published or hasattr(self.config, "workerinput"):
            self.prepare()
            return
        start = time.perf_counter()
        try:
            self._check_outputs()  # before an evaluation that may take an hour
        except ValueError as error:
            raise pytest.UsageError(f"illusion-checks: {error}") from error
        self.prepare()
        self._write_outputs()
        self.published = True
        self.elapsed = time.perf_counter() - start

    def _check_outputs(self) -> None:
        """The outputs are two files, each can be written (its folder made, a temp file created there),
        or a ValueError names the option."""
        from illusion_checks.api import check_outputs

        check_outputs(self.json_path, self.report_path, None if self.cfg.from_results else self.cfg.spec.save_compressed)

    def _reload(self) -> dict[str, Any]:
        """The --illusion-from-results file, its summary recomputed from its items (the gates read that one);
        a ResultsError when the stored summary disagrees, before anything is written."""
        from illusion_checks.results import checked_summary, load_results

        from illusion_checks.sweep import runs_of

        assert self.cfg.from_results
        results = load_results(self.cfg.from_results)
        for i, run in enumerate(runs_of(results)):  # a sweep's runs are the objects its file holds
            where = str(self.cfg.from_results) + (f": runs[{i}]" if results.get("runs") else "")
            run["summary"] = checked_summary(run, where)
        return results

    def _evaluate(self) -> dict[str, Any]:
        from illusion_checks.api import run_evaluation
        from illusion_checks.pytest_plugin.progress import progress_display

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        capman = self.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman else nullcontext():
            with progress_display(self.config, self._line, self.cfg.progress_interval) as progress:
                results, self.stats = run_evaluation(self.cfg.spec, progress, self._log, self._warn, self.cfg.gates)
        return results

    def _log(self, message: str) -> None:
        if self.config.get_verbosity() >= 0:
            self._line(f"illusion-checks: {message}")

    def _line(self, line: str) -> None:
        """One line on pytest's terminal (stdout), whatever the verbosity, flushed: a CI log reads a
        pipe, which would otherwise hold an hour's progress in its buffer."""
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None:
            with self._writing:
                reporter.write_line(line)
                reporter.flush()

    def _warn(self, message: str) -> None:
        # The evaluation runs outside any test's warnings capture: say it on the terminal now, and
        # put it in pytest's warnings summary (where -W error / filterwarnings apply to it).
        self._log(f"warning: {message.removeprefix('illusion-checks: ')}")
        self.config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)

    def _write_outputs(self) -> None:
        from illusion_checks.api import write_outputs

        assert self.results is not None
        write_outputs(self.results, self.json_path, self.report_path)

    # -- pytest glue -----------------------------------------------------------------------
    def start(self) -> None:
        """Under xdist the controller collects nothing and its workers must not load a model, so it
        obtains and writes the results before they start, whatever they will select."""
        if self.config.pluginmanager.has_plugin("dsession"):
            self.publish()

    def configure_node(self, node: Any) -> None:
        """Hand workers the results file so no worker loads a model."""
        node.workerinput[WORKER_KEY] = str(self.json_path)

    def collect(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        """Add the generated tests the command line names, before -k, -m and --lf deselect. With results
        at hand (a results file, an xdist worker) they are the real tests; otherwise stand-ins for every
        test that could exist, counted once collection settles (`settle`), so that deselecting them all
        loads no model."""
        from illusion_checks.pytest_plugin.items import build_all_groups
        from illusion_checks.sweep import runs_of

        if self.named.nothing:
            return
        if self.cfg.from_results or hasattr(self.config, "workerinput"):
            self.prepare()  # reads a file: no model
        if self.results is not None:
            reports = [self._collect(session, group)
                       for group in build_all_groups(session, self.results, self.gates, self.cfg.item_policy)]
            langs = sorted(runs_of(self.results)[0]["summary"]["per_language"])
            for report in reports:
                session.ihook.pytest_collectreport(report=report)
        else:
            plan = self._plan()
            reports = self._pending = [self._collect(session, group) for group in self._pending_groups(session, plan)]
            langs = [lang for lang, _ in plan.gates if lang != OVERALL]
        nodes = [node for report in reports for node in report.result]
        unknown = self.named.unmatched([node.nodeid for node in nodes])
        if unknown:
            raise pytest.UsageError(f"illusion-checks: {', '.join(unknown)} names no generated test of this run "
                                    f"(its languages: {', '.join(langs)})")
        items.extend(nodes)

    def _plan(self) -> Plan:
        from illusion_checks.pytest_plugin.selection import plan_tests

        try:
            return plan_tests(self.cfg.spec, self.cfg.gates)
        except ValueError as error:  # a data set that cannot load, a language it lacks
            raise pytest.UsageError(f"illusion-checks: {error}") from error

    def _pending_groups(self, session: pytest.Session, plan: Plan) -> list[pytest.Collector]:
        """Stand-ins: the plan's tests (for each spec of a sweep), or the search's verdict."""
        from illusion_checks.pytest_plugin.items import build_pending_groups, pending_search_group

        spec, policy = self.cfg.spec, self.cfg.item_policy
        if spec.search:
            return [pending_search_group(session)]
        sweep = spec.compress_specs if len(spec.compress_specs) > 1 else (None,)
        return [group for label in sweep for group in build_pending_groups(session, plan.items, plan.gates, policy, label)]

    def _collect(self, session: pytest.Session, group: pytest.Collector) -> pytest.CollectReport:
        """A group collected through pytest's hooks, holding only the tests the command line names;
        reporting it (`pytest_collectreport`) counts them in "collected N items"."""
        session.ihook.pytest_collectstart(collector=group)
        report = session.ihook.pytest_make_collect_report(collector=group)
        report.result = [node for node in report.result if node.nodeid in self.named]
        return report

    def hold_back(self, deselected: list[pytest.Item]) -> None:
        """Stand-ins that -k, -m or --lf deselect are counted when collection settles, not now."""
        from illusion_checks.pytest_plugin.items import PendingCheck

        if self._pending:
            deselected[:] = [node for node in deselected if not isinstance(node, PendingCheck)]

    def settle(self, session: pytest.Session) -> None:
        """After deselection: obtain the results only if a generated test is still selected and pytest
        will run tests; then the stand-ins give way to the real tests."""
        from illusion_checks.pytest_plugin.items import GateCheck, ItemCheck, PendingCheck, SearchCheck

        pending, self._pending = self._pending, []
        selected = [node for node in session.items if isinstance(node, (PendingCheck, ItemCheck, GateCheck, SearchCheck))]
        why_not = self._why_no_test_runs(session) if selected else "no illusion test selected"
        if why_not is not None:
            self.unpublished_because = why_not
            if pending:  # counted as they are: what could run
                for report in pending:
                    session.ihook.pytest_collectreport(report=report)
                chosen = set(selected)
                self._deselect(session, [node for report in pending for node in report.result if node not in chosen])
            return
        self.publish()
        if pending:
            self._swap_in(session, pending, selected)

    def _why_no_test_runs(self, session: pytest.Session) -> str | None:
        for option, reason in RUNS_NO_TEST.items():
            if self.config.getoption(option, False):
                return reason
        if session.testsfailed and not self.config.getoption("continue_on_collection_errors", False):
            return "errors during collection stop the run"
        return None

    def _swap_in(self, session: pytest.Session, pending: list[pytest.CollectReport], selected: list[pytest.Item]) -> None:
        """Each selected stand-in becomes its real test, or goes (an item the reference does not get
        right); the real tests whose stand-ins were deselected are reported deselected, as -k would."""
        from illusion_checks.pytest_plugin.items import PendingCheck, build_all_groups, check_key

        real: dict[tuple[Any, ...], pytest.Item] = {}
        for group in build_all_groups(session, self.results, self.gates, self.cfg.item_policy):
            report = self._collect(session, group)
            session.ihook.pytest_collectreport(report=report)
            real.update((check_key(node), node) for node in report.result)
        planned = {check_key(node) for report in pending for node in report.result}
        chosen = {check_key(node) for node in selected}
        session.items[:] = [real[check_key(node)] if isinstance(node, PendingCheck) else node for node in session.items
                            if not isinstance(node, PendingCheck) or check_key(node) in real]
        # A real test the plan did not foresee runs: a gate is never hidden (the plan foresees them all).
        session.items.extend(node for key, node in real.items() if key not in planned)
        self._deselect(session, [node for key, node in real.items() if key in planned and key not in chosen])

    @staticmethod
    def _deselect(session: pytest.Session, nodes: list[pytest.Item]) -> None:
        if nodes:
            session.ihook.pytest_deselected(items=nodes)

    def terminal_summary(self, reporter: Any) -> None:
        """The table, the outputs, then the evaluation's wall time as the last illusion line (pytest's
        own duration counts the tests, not the evaluation during collection); on GitHub Actions, the
        job summary and an `::error` annotation per failed gate."""
        from illusion_checks.pytest_plugin.terminal import summary_table, sweep_table

        if hasattr(self.config, "workerinput"):
            return
        if not self.published:
            if self.unpublished_because:
                reporter.write_line(f"illusion-checks: no model loaded, no report written: {self.unpublished_because}")
            return
        assert self.results is not None
        if self.results.get("runs"):
            sweep_table(reporter, self.results)
        else:
            summary_table(reporter, self.results, self.gates)
        self._github(reporter)
        reporter.write_line(f"illusion-checks report: {self.report_path}")
        reporter.write_line(f"illusion-checks results: {self.json_path}")
        if self.stats is not None and self.stats.phase_seconds:
            phases = ", ".join(f"{name} {duration(seconds)}" for name, seconds in self.stats.phase_seconds.items())
            reporter.write_line(f"illusion-checks: phases: {phases}")
        if self.stats is not None:
            cached = [role for role in ("reference", "compressed") if getattr(self.stats, f"{role}_cached")]
            reporter.write_line(f"illusion-checks: evaluated in {duration(self.elapsed)} (wall time); models loaded: "
                                f"{self.stats.models_loaded}; from cache: {', '.join(cached) or 'nothing'}")
        elif self.cfg.from_results:
            reporter.write_line(f"illusion-checks: gates re-applied to {Path(self.cfg.from_results).resolve()} in "
                                f"{duration(self.elapsed)} (wall time); models loaded: 0")

    def _github(self, reporter: Any) -> None:
        """`::error` lines for failed gates (GitHub turns them into annotations) and the job summary,
        appended to $GITHUB_STEP_SUMMARY; a summary that cannot be written is a warning, not the verdict."""
        from illusion_checks.pytest_plugin import ci_summary

        assert self.results is not None
        self._to_github(ci_summary.annotations(self.results, self.gates),
                        lambda: ci_summary.step_summary(self.results, self.gates, self.json_path, self.report_path))

    def _to_github(self, errors: list[str], markdown: Callable[[], str]) -> None:
        from illusion_checks.pytest_plugin import ci_summary

        if os.environ.get("GITHUB_ACTIONS") == "true":
            for line in errors:
                self._line(line)
        path = os.environ.get(ci_summary.SUMMARY_ENV)
        if path:
            try:
                ci_summary.append_step_summary(path, markdown())
            except ValueError as error:  # the gates decide the exit status, not the summary file
                self._line(f"illusion-checks: warning: {error}")
