"""What one evaluation is asked to do, as plain frozen data: the pytest glue, benchmarks and the
Python API all build it, and every option's default lives here once."""

from __future__ import annotations

from typing import Callable

DEFAULT_BATCH_SIZE = 16
Progress = Callable[[str, int, int], None]  # (phase, done, total), running totals
