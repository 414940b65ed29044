"""The plugin's session object: obtains the results once per run (only when a generated test will run,
or a test asks for them) by evaluating, or by reloading --illusion-from-results, and writes the outputs.
Its `collection` collects the generated tests (`collection.py`)."""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from illusion_checks.errors import RunError
from illusion_checks.gates import Gate
from illusion_checks.pytest_plugin.collection import Collection
from illusion_checks.pytest_plugin.config import IllusionConfig
from illusion_checks.pytest_plugin.selection import Named
from illusion_checks.results import ResultsError, checked_summary, is_multi_run, load_results, runs_of

WORKER_KEY = "illusion_results_path"
# The exit status of a run whose evaluation could not finish (a server died or stalled): pytest's
# "interrupted", distinct from a failed gate (1) and a usage error (4).
RUN_FAILED = pytest.ExitCode.INTERRUPTED


class IllusionSession:
    """Registered as a plugin when `--illusion-model` or `--illusion-from-results` is given."""

    def __init__(self, cfg: IllusionConfig, config: pytest.Config, named: Named) -> None:
        self.cfg, self.config = cfg, config
        self.collection = Collection(cfg, named)
        self.results: dict[str, Any] | None = None
        self.gates: list[Gate] = []
        self.stats: Any = None
        self.elapsed = 0.0
        self.json_path = Path(cfg.json).resolve()
        self.report_path = Path(cfg.report).resolve()
        self.published = False
        self._writing = threading.Lock()  # progress heartbeats write from their own thread

    def prepare(self) -> None:
        """Evaluate (or load) once and apply the gates; on an xdist worker, read what the controller
        wrote. Writes nothing."""
        from illusion_checks.api import apply_gates

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
            ci_summary.to_github([ci_summary.error_line(message, "illusion-checks run failed")],
                                 lambda: ci_summary.failure_summary(message), self.line)
            pytest.exit(message, returncode=RUN_FAILED)
        self.gates = apply_gates(self.results, self.cfg.gates)

    def results_at_hand(self) -> tuple[dict[str, Any], list[Gate]] | None:
        """The results and their gates when they cost no model (a results file; on an xdist worker, the
        controller's), else None."""
        if self.cfg.from_results or hasattr(self.config, "workerinput"):
            self.prepare()  # reads a file: no model
        return None if self.results is None else (self.results, self.gates)

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
        and the caches are writable folders, or a ValueError names the option."""
        from illusion_checks.api import check_outputs

        reloaded = bool(self.cfg.from_results)
        check_outputs(self.json_path, self.report_path, None if reloaded else self.cfg.spec.save_compressed,
                      None if reloaded else self.cfg.spec.cache_dir, caches=not reloaded)

    def _reload(self) -> dict[str, Any]:
        """The --illusion-from-results file, its summary recomputed from its items (the gates read that one);
        a ResultsError when the stored summary disagrees, before anything is written."""
        assert self.cfg.from_results
        results = load_results(self.cfg.from_results)
        for i, run in enumerate(runs_of(results)):  # a sweep's runs are the objects its file holds
            where = str(self.cfg.from_results) + (f": runs[{i}]" if is_multi_run(results) else "")
            run["summary"] = checked_summary(run, where)
        return results

    def _evaluate(self) -> dict[str, Any]:
        from illusion_checks.api import run_evaluation
        from illusion_checks.pytest_plugin.progress import progress_display

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        capman = self.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman else nullcontext():
            with progress_display(self.config, self.line, self.cfg.progress_interval) as progress:
                results, self.stats = run_evaluation(self.cfg.spec, progress, self._log, self._warn, self.cfg.gates)
        return results

    def _log(self, message: str) -> None:
        if self.config.get_verbosity() >= 0:
            self.line(f"illusion-checks: {message}")

    def line(self, line: str) -> None:
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

    # -- xdist -----------------------------------------------------------------------------
    def start(self) -> None:
        """Under xdist the controller collects nothing and its workers must not load a model, so it
        obtains and writes the results before they start, whatever they will select."""
        if self.config.pluginmanager.has_plugin("dsession"):
            self.publish()

    def configure_node(self, node: Any) -> None:
        """Hand workers the results file so no worker loads a model."""
        node.workerinput[WORKER_KEY] = str(self.json_path)
