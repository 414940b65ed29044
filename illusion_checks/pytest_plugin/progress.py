"""Progress of the long phases: rich bars on a terminal; in a CI log, plain lines that say what runs,
how far it is and how long it has left, without flooding the log."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from illusion_checks.spec import Progress

PREFIX = "illusion-checks: "
DEFAULT_INTERVAL = 30.0  # seconds between two lines of one phase, at least
HEARTBEAT = 120.0  # seconds without a line after which a still-running phase says so
QUIET_HEARTBEAT = 300.0  # the same under -q, which otherwise prints a phase's start and end lines only
UNITS = {"probe": "items", "compress": "layers"}  # by a phase's first word; other phases count nothing


def progress_mode(config: Any) -> str | None:
    """'bars' on a terminal; 'lines' in a log (no tty, or CI set); 'ends' (start and end lines, and a
    heartbeat every 5 minutes) under -q; None on an xdist worker, which evaluates nothing."""
    if hasattr(config, "workerinput"):
        return None
    if config.get_verbosity() < 0:
        return "ends"
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    tty = sys.__stderr__ is not None and sys.__stderr__.isatty()
    return "bars" if tty and not in_ci else "lines"


def duration(seconds: float) -> str:
    """'4.2s', '45s', '3m10s', '1h05m': short enough for a log line, exact enough to plan by."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class _Phase:
    """Where the running phase stands: `probe compressed [wanda:0.5]`, its step (`CS`), the counts."""

    name: str
    started: float
    step: str = ""
    step_started: float = 0.0
    done: int = 0
    total: int = 0
    last_event: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # finished steps: seconds per item

    def finish_step(self) -> None:
        if self.step and self.total:
            self.steps[self.step] = (self.last_event - self.step_started) / self.total


class LogLines:
    """A `(phase, done, total)` callback printing plain lines: one when a phase starts, then at most
    every `interval` seconds as counts move (never with `updates` off), at least every `HEARTBEAT`
    seconds while it runs (`beat`; `QUIET_HEARTBEAT` with `updates` off, so that a quiet CI log still
    shows a long phase alive), and one when it ends (the next phase starts, or `close`)."""

    def __init__(self, write: Callable[[str], None], interval: float = DEFAULT_INTERVAL, updates: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.updates, self.clock = write, interval, updates, clock
        self.phase: _Phase | None = None
        self.profile: dict[str, float] = {}  # the last probe phase's steps, to tell a later one its time left
        self.last_line = 0.0
        self.lock = threading.Lock()

    def __call__(self, phase: str, done: int, total: int) -> None:
        name, _, step = phase.partition(": ")
        with self.lock:
            now = self.clock()
            if self.phase is None or self.phase.name != name:
                self._end()
                self.phase = _Phase(name, now, step, now, last_event=now)
                counted = name.startswith("probe")  # a compression's layers are counted once it runs
                self._say(f"{name}: started" + (f", {total} {self._unit()}" if counted else ""), now)
            current = self.phase
            if step != current.step:
                current.finish_step()
                current.step, current.step_started = step, current.last_event
            current.done, current.total, current.last_event = done, total, now
            if not step and 0 < total <= done:  # the phase itself is complete (steps report under their names)
                self._end()
            elif self.updates and self._unit() and done and now - self.last_line >= self.interval:
                self._say(self._status(now), now)

    def beat(self) -> None:
        """A line for a phase that has printed none for `HEARTBEAT` seconds (a long batch, a slow load)."""
        with self.lock:
            now = self.clock()
            wait = max(HEARTBEAT, self.interval) if self.updates else QUIET_HEARTBEAT
            if self.phase is not None and now - self.last_line >= wait:
                self._say(self._status(now), now)

    def close(self) -> None:
        with self.lock:
            self._end()

    def _unit(self) -> str:
        assert self.phase is not None
        return UNITS.get(self.phase.name.split(" ")[0], "")

    def _status(self, now: float) -> str:
        """`probe compressed [wanda:0.5]: CS 40/80 items, 3m10s elapsed, ~3m left`."""
        phase, unit = self.phase, self._unit()
        assert phase is not None
        text = f"{phase.name}: " + (f"{phase.step} " if phase.step else "")
        if unit:
            text += f"{phase.done}/{phase.total} {unit}, "
        text += f"{duration(now - phase.started)} elapsed"
        left = self._left(phase) if unit else None
        if left is None or left[0] - (now - phase.last_event) <= 0:  # a heartbeat counts from the last count
            return text
        return text + f", ~{duration(left[0] - (now - phase.last_event))} left{left[1]}"

    def _left(self, phase: _Phase) -> tuple[float, str] | None:
        """Seconds left, and '' for the phase or ' in this step' for its current step alone. A probe phase
        after the first runs the same steps: the first's time per item, scaled by the rate now, covers
        the steps still to come; before one has finished, only the current step can be estimated."""
        spent = phase.last_event - phase.step_started
        if not phase.done or spent <= 0:
            return None
        rate = spent / phase.done
        left = (phase.total - phase.done) * rate
        known = list(self.profile)
        if phase.step and phase.step in known and self.profile[phase.step] > 0:
            scale = rate / self.profile[phase.step]
            later = known[known.index(phase.step) + 1:]
            return left + sum(self.profile[step] * phase.total * scale for step in later), ""
        if phase.done >= phase.total:
            return None
        return left, " in this step" if phase.step else ""

    def _end(self) -> None:
        phase = self.phase
        if phase is None:
            return
        counted = f"{phase.done} {self._unit()} in " if self._unit() and phase.done else "in "
        self._say(f"{phase.name}: done, {counted}{duration(phase.last_event - phase.started)}", phase.last_event)
        phase.finish_step()
        if phase.steps:
            self.profile = phase.steps
        self.phase = None

    def _say(self, text: str, now: float) -> None:
        self.write(PREFIX + text)
        self.last_line = now


@contextmanager
def log_lines(write: Callable[[str], None], interval: float, updates: bool) -> Iterator[Progress]:
    """`LogLines`, with a thread that calls `beat` while the evaluation runs."""
    lines = LogLines(write, interval, updates)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(5.0):
            lines.beat()

    thread = threading.Thread(target=heartbeat, name="illusion-checks-progress", daemon=True)
    thread.start()
    try:
        yield lines
    finally:
        stop.set()
        thread.join()
        lines.close()


@contextmanager
def progress_display(config: Any, write: Callable[[str], None], interval: float = DEFAULT_INTERVAL) -> Iterator[Progress]:
    """The progress callback for this run's output: bars, lines, start and end lines, or nothing."""
    mode = progress_mode(config)
    if mode is None:
        yield lambda phase, done, total: None
    elif mode != "bars":
        with log_lines(write, interval, updates=mode == "lines") as progress:
            yield progress
    else:
        with rich_bars() as progress:
            yield progress


@contextmanager
def rich_bars() -> Iterator[Progress]:
    """One bar with ETA per phase step, on stderr."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

    bars = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=Console(file=sys.__stderr__), transient=False)
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(escape(phase), total=total)  # "[wanda:0.5]" is text, not markup
        bars.update(tasks[phase], completed=done, total=total)

    with bars:
        yield update
