"""Rich progress bars for the long phases, quiet where they would only add noise."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from illusion_checks.spec import Progress


def wants_progress(config: Any) -> bool:
    """Not under -q, CI=true, a non-tty stderr, or on an xdist worker."""
    if config.get_verbosity() < 0 or os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return sys.__stderr__ is not None and sys.__stderr__.isatty() and not hasattr(config, "workerinput")


@contextmanager
def progress_display(config: Any) -> Iterator[Progress]:
    """A `(phase, done, total)` callback (running totals) drawing one bar with ETA per phase."""
    if not wants_progress(config):
        yield lambda phase, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

    bars = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=Console(file=sys.__stderr__), transient=False)
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(phase, total=total)
        bars.update(tasks[phase], completed=done, total=total)

    with bars:
        yield update
