"""What a run says at its end: the terminal summary (the table, the outputs, the evaluation's wall time)
and, on GitHub Actions, the job summary and an `::error` annotation per failed gate. The glue around the
pure functions of `terminal.py` and `ci_summary.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from illusion_checks.pytest_plugin import ci_summary
from illusion_checks.pytest_plugin.progress import duration
from illusion_checks.pytest_plugin.session import IllusionSession
from illusion_checks.pytest_plugin.terminal import summary_table, sweep_table
from illusion_checks.results import is_multi_run


def write_summary(reporter: Any, illusion: IllusionSession) -> None:
    """The table, the outputs, then the evaluation's wall time as the last illusion line (pytest's
    own duration counts the tests, not the evaluation during collection); on GitHub Actions, the
    job summary and an `::error` annotation per failed gate. An xdist worker says nothing."""
    if hasattr(illusion.config, "workerinput"):
        return
    if not illusion.published:
        why_not = illusion.collection.not_run_because
        if why_not:
            reporter.write_line(f"illusion-checks: no model loaded, no report written: {why_not}")
        return
    results, gates = illusion.results, illusion.gates
    assert results is not None
    if is_multi_run(results):
        sweep_table(reporter, results, illusion.cfg.gates.alpha)
    else:
        summary_table(reporter, results, gates)
    # `::error` lines for failed gates (GitHub turns them into annotations) and the job summary.
    ci_summary.to_github(ci_summary.annotations(results, gates),
                         lambda: ci_summary.step_summary(results, gates, illusion.json_path, illusion.report_path),
                         illusion.line)
    reporter.write_line(f"illusion-checks report: {illusion.report_path}")
    reporter.write_line(f"illusion-checks results: {illusion.json_path}")
    _wall_time(reporter, illusion)


def _wall_time(reporter: Any, illusion: IllusionSession) -> None:
    """The phases and the evaluation's wall time, or the reload's."""
    stats = illusion.stats
    if stats is not None and stats.phase_seconds:
        phases = ", ".join(f"{name} {duration(seconds)}" for name, seconds in stats.phase_seconds.items())
        reporter.write_line(f"illusion-checks: phases: {phases}")
    if stats is not None:
        cached = [role for role in ("reference", "compressed") if getattr(stats, f"{role}_cached")]
        reporter.write_line(f"illusion-checks: evaluated in {duration(illusion.elapsed)} (wall time); models loaded: "
                            f"{stats.models_loaded}; from cache: {', '.join(cached) or 'nothing'}")
    elif illusion.cfg.from_results:
        reporter.write_line(f"illusion-checks: gates re-applied to {Path(illusion.cfg.from_results).resolve()} in "
                            f"{duration(illusion.elapsed)} (wall time); models loaded: 0")
