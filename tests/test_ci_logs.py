"""The plugin in a CI job, where nobody watches a terminal: plain progress lines without a tty, the
GitHub Actions job summary and annotations, and a log free of third-party noise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from illusion_checks.pytest_plugin.progress import LogLines, duration
from tests.helpers.plugin_runs import write_results

TINY_ARGS = ("--illusion-compress=magnitude:0.5", "--illusion-items=3", "--illusion-langs=en,de",
             "--illusion-no-reachability", "--illusion-no-cache", "--illusion-max-dissociation=0.5")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines_for(events: list[tuple[float, str, int, int]], updates: bool = True, interval: float = 30.0) -> list[str]:
    """What LogLines prints for (seconds since start, phase, done, total) events."""
    out: list[str] = []
    clock = Clock()
    start = clock.now
    progress = LogLines(out.append, interval, updates, clock)
    for at, phase, done, total in events:
        clock.now = start + at
        if phase == "beat":
            progress.beat()
        else:
            progress(phase, done, total)
    progress.close()
    return [line.removeprefix("illusion-checks: ") for line in out]


def test_a_phase_prints_its_start_then_at_most_every_interval_then_its_end() -> None:
    steps = [(0, "probe compressed [wanda:0.5]", 0, 80)]
    steps += [(10 * k, "probe compressed [wanda:0.5]: FF, MC, rank, beam, samples", 4 * k, 80) for k in range(1, 21)]
    steps += [(201, "probe compressed [wanda:0.5]", 80, 80)]
    assert lines_for(steps) == [
        "probe compressed [wanda:0.5]: started, 80 items",
        # 30 s after the start line, then every 30 s: 12/80 in 30 s is 18 s per 8 items, 68 left -> 2m50s
        "probe compressed [wanda:0.5]: FF, MC, rank, beam, samples 12/80 items, 30s elapsed, ~2m50s left in this "
        "step",
        "probe compressed [wanda:0.5]: FF, MC, rank, beam, samples 24/80 items, 1m00s elapsed, ~2m20s left in this "
        "step",
        "probe compressed [wanda:0.5]: FF, MC, rank, beam, samples 36/80 items, 1m30s elapsed, ~1m50s left in this "
        "step",
        "probe compressed [wanda:0.5]: FF, MC, rank, beam, samples 48/80 items, 2m00s elapsed, ~1m20s left in this "
        "step",
        "probe compressed [wanda:0.5]: FF, MC, rank, beam, samples 60/80 items, 2m30s elapsed, ~50s left in this "
        "step",
        "probe compressed [wanda:0.5]: FF, MC, rank, beam, samples 72/80 items, 3m00s elapsed, ~20s left in this "
        "step",
        "probe compressed [wanda:0.5]: done, 80 items in 3m21s",
    ]


def test_a_step_estimates_from_its_own_rate_and_a_stalled_phase_still_says_it_runs() -> None:
    steps = [(0, "probe reference", 0, 10), (100, "probe reference: FF", 10, 10),
             (110, "probe reference: CS", 2, 10),  # 10 s after the last line: too soon
             (130, "probe reference: CS", 5, 10),  # CS started at 100: 5 items in 30 s
             (140, "beat", 0, 0),  # 10 s since the last line: too soon for a heartbeat
             (251, "beat", 0, 0),  # over 2 minutes since the last line: one, even with no new count
             (300, "probe reference: CS", 6, 10),  # 6 in 200 s: ~133 s left
             (421, "beat", 0, 0),  # 121 s later: the estimate counts down
             (541, "beat", 0, 0),  # past the estimate: none is given
             (600, "probe reference", 10, 10)]
    assert lines_for(steps) == [
        "probe reference: started, 10 items",
        "probe reference: FF 10/10 items, 1m40s elapsed",
        "probe reference: CS 5/10 items, 2m10s elapsed, ~30s left in this step",
        "probe reference: CS 5/10 items, 4m11s elapsed",
        "probe reference: CS 6/10 items, 5m00s elapsed, ~2m13s left in this step",
        "probe reference: CS 6/10 items, 7m01s elapsed, ~12s left in this step",
        "probe reference: CS 6/10 items, 9m01s elapsed",
        "probe reference: done, 10 items in 10m00s",
    ]


def test_a_later_probe_phase_estimates_its_whole_time_left_from_the_first() -> None:
    # The reference took 10 s per item for FF, 2 for CS, 3 for 1-shot; the copy runs FF at 12 s per
    # item (x1.2), so its CS and 1-shot should take 24 s and 36 s more.
    steps = [(0, "probe reference", 0, 10), (100, "probe reference: FF", 10, 10), (120, "probe reference: CS", 10, 10),
             (150, "probe reference: 1-shot", 10, 10), (150, "probe reference", 10, 10),
             (150, "probe compressed [x]", 0, 10), (210, "probe compressed [x]: FF", 5, 10),
             (270, "probe compressed [x]: FF", 10, 10), (300, "probe compressed [x]", 10, 10)]
    assert lines_for(steps) == [
        "probe reference: started, 10 items",
        "probe reference: FF 10/10 items, 1m40s elapsed",
        "probe reference: 1-shot 10/10 items, 2m30s elapsed",
        "probe reference: done, 10 items in 2m30s",
        "probe compressed [x]: started, 10 items",
        "probe compressed [x]: FF 5/10 items, 1m00s elapsed, ~2m00s left",
        "probe compressed [x]: FF 10/10 items, 2m00s elapsed, ~1m00s left",
        "probe compressed [x]: done, 10 items in 2m30s",
    ]


def test_quiet_keeps_the_start_and_end_lines_and_phases_without_counts_never_update() -> None:
    steps = [(0, "load reference", 0, 1), (200, "beat", 0, 0), (300, "load reference", 1, 1),
             (300, "compress [wanda:0.5]", 0, 1), (330, "compress [wanda:0.5]", 10, 30),
             (400, "compress [wanda:0.5]", 30, 30)]
    assert lines_for(steps, updates=False) == [
        "load reference: started", "load reference: done, in 5m00s",
        "compress [wanda:0.5]: started", "compress [wanda:0.5]: done, 30 layers in 1m40s",
    ]
    assert "compress [wanda:0.5]: 10/30 layers, 30s elapsed, ~1m00s left" in lines_for(steps)


def test_quiet_still_says_every_five_minutes_that_a_long_phase_runs() -> None:
    """`pytest -q` in a CI log: a phase that runs for 12 minutes prints a line at 5 and 10 minutes
    (not at 2, as without -q), so the log never looks hung for longer than 5 minutes."""
    steps = [(0, "probe reference", 0, 10), (130, "beat", 0, 0), (299, "beat", 0, 0), (300, "beat", 0, 0),
             (305, "probe reference: FF", 2, 10), (599, "beat", 0, 0), (600, "beat", 0, 0), (720, "probe reference", 10, 10)]
    assert lines_for(steps, updates=False) == [
        "probe reference: started, 10 items",
        "probe reference: 0/10 items, 5m00s elapsed",
        "probe reference: FF 2/10 items, 10m00s elapsed, ~15m25s left in this step",
        "probe reference: done, 10 items in 12m00s",
    ]


def test_durations_read_at_a_glance() -> None:
    assert [duration(s) for s in (0.04, 4.44, 45, 190, 700, 7322)] == ["0.0s", "4.4s", "45s", "3m10s", "11m40s", "2h02m"]


def progress_counts(stdout: str, phase: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(rf"^illusion-checks: {re.escape(phase)} (\d+)/6 items, ", stdout, re.M)]


def test_a_tiny_model_run_without_a_tty_prints_progress_lines(pytester: pytest.Pytester, tiny_llama_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", *TINY_ARGS, "--illusion-batch-size=1",
                                "--illusion-progress-interval=0")
    assert result.ret == 1  # a random model answers nothing: its gates fail
    out = result.stdout.str()
    for phase in ("probe reference", "probe compressed [magnitude:0.5]"):
        counts = progress_counts(out, f"{phase}: CS, 1-shot, 0-shot short")
        assert counts == sorted(counts) and len(counts) >= 3 and counts[-1] == 6, (phase, out)
    result.stdout.fnmatch_lines([
        "illusion-checks: load reference: started", "illusion-checks: load reference: done, in *s",
        "illusion-checks: probe reference: started, 6 items",
        "illusion-checks: probe reference: FF, MC, rank, beam, samples 1/6 items, *s elapsed, ~*s left in this step",
        "illusion-checks: probe reference: done, 6 items in *s",
        "illusion-checks: compress [[]magnitude:0.5[]]: started",
        "illusion-checks: probe compressed [[]magnitude:0.5[]]: done, 6 items in *s",
        "*= illusion-checks summary =*",
        "illusion-checks: evaluated in *s (wall time); models loaded: 1; from cache: nothing",
    ])
    # The copy's phase runs the reference's steps again: its estimate covers the whole phase.
    assert re.search(r"^illusion-checks: probe compressed \[magnitude:0\.5\]: FF, MC, rank, beam, samples \d/6 items, "
                     r"[\d.]+s elapsed, ~[\d.]+s left$", out, re.M), out
    last = [line for line in out.splitlines() if line.startswith("illusion-checks")][-1]
    assert last.startswith("illusion-checks: evaluated in ")


def test_quiet_runs_print_only_start_and_end_lines(pytester: pytest.Pytester, tiny_llama_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", *TINY_ARGS, "--illusion-batch-size=1",
                                "--illusion-progress-interval=0", "-q")
    progress = [line for line in result.stdout.lines if re.match(r"illusion-checks: (prepare|load|probe|compress)", line)]
    assert progress and all(re.search(r": (started|done)\b", line) for line in progress), progress
    assert len(progress) == 10  # prepare, load and probe the reference, compress, probe the copy: start and end


def test_github_gets_a_job_summary_and_an_error_per_failed_gate(pytester: pytest.Pytester, crafted: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    summary = pytester.path / "step-summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    source = write_results(pytester, crafted)
    per = crafted["summary"]["per_language"]
    assert per["en"]["dissociation_rate"] == 0 and per["sw"]["dissociation_rate"] > 0.1  # one sw item is MC-only
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0.1")
    assert result.ret == 1
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n## illusion-checks: FAIL")  # appended, never overwritten
    overall = crafted["summary"]["overall"]["dissociation_rate"]
    rows = {row.split(" | ")[1]: row for row in text.splitlines() if row.startswith("| dissociation |")}
    assert rows["en"].endswith("| ≤ 0.1 | pass |")
    assert rows["sw"].endswith("| ≤ 0.1 | **FAIL** |")
    assert rows["overall"].endswith("| pass |" if overall <= 0.1 else "| **FAIL** |")
    assert f"| sw | {per['sw']['n_both_correct']} | {per['sw']['n_both_correct'] - 1} | 1 | 0 | 0 |" in text
    assert "### Findings" in text and str(pytester.path / "reports" / "illusion-report.html") in text
    errors = [line for line in result.stdout.lines if line.startswith("::error ")]
    failed = ["sw"] + ([] if overall <= 0.1 else ["overall"])
    assert [re.search(r"dissociation\[(\w+)\]", line).group(1) for line in errors] == failed
    assert all(line.startswith("::error title=illusion-checks gate failed::") for line in errors)


def test_a_tiny_model_run_writes_the_summary_of_its_evaluation(pytester: pytest.Pytester, tiny_llama_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    summary = pytester.path / "nested" / "summary.md"  # the runner creates it; a missing file is created
    summary.parent.mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    result = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", *TINY_ARGS)
    assert result.ret == 1
    assert not [line for line in result.stdout.lines if line.startswith("::")]  # annotations only on GitHub
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## illusion-checks: FAIL — ") and text.splitlines()[0].endswith(" vs magnitude:0.5")
    for lang in ("de", "en", "overall"):
        assert re.search(rf"^\| dissociation \| {lang} \| - \| - \| ≤ 0\.5 \| \*\*FAIL\*\* \(no reference-both-correct",
                         text, re.M), text


def test_an_unwritable_summary_is_a_warning_and_the_gates_decide(pytester: pytest.Pytester, crafted: dict[str, Any],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = pytester.path / "a-file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(blocker / "summary.md"))
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0.9")
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"illusion-checks: warning: GITHUB_STEP_SUMMARY='{blocker / 'summary.md'}': "
                                 "cannot append the job summary: *"])


def test_a_ci_run_streams_its_progress_and_writes_nothing_to_stderr(tiny_llama_dir: Path, tmp_path: Path) -> None:
    # Its own process, with stdout and stderr pipes as a CI runner has them: not a tty, CI set.
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--illusion-model={tiny_llama_dir}",
               *TINY_ARGS, "--illusion-save-compressed=saved"]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    env.update(CI="true", OMP_NUM_THREADS="1")
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as run:
        assert run.stdout is not None
        for line in run.stdout:  # the line arrives while the run goes on, not when it ends
            if "illusion-checks: probe reference: started" in line:
                still_running = run.poll() is None
                break
        rest, stderr = run.communicate(timeout=300)
    assert still_running and run.returncode == 1, rest
    assert stderr.strip() == ""  # no warning, no third-party progress bar
    assert "warnings summary" not in rest and "illusion-checks: evaluated in " in rest
    assert (tmp_path / "saved" / "model.safetensors").is_file()


def test_a_run_that_cannot_finish_says_so_on_github(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import illusion_checks.api as api
    from illusion_checks.errors import RunError

    def server_died(*args: Any, **kwargs: Any) -> Any:  # the fault: a server that died mid-run
        raise RunError("http://127.0.0.1:9/v1: the connection was refused (--illusion-compressed)")

    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setattr(api, "run_evaluation", server_died)
    result = pytester.runpytest("--illusion-model=smollm2-135m", "--illusion-compress=magnitude:0.5",
                                "--illusion-items=1", "--illusion-langs=en")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## illusion-checks: ERROR — the evaluation could not finish")
    assert "http://127.0.0.1:9/v1: the connection was refused" in text
    result.stdout.fnmatch_lines(["::error title=illusion-checks run failed::illusion-checks: the evaluation could "
                                 "not finish: http://127.0.0.1:9/v1: the connection was refused (--illusion-compressed)"])
