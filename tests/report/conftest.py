"""Shared synthetic results for the report tests (built once, handed out as deep copies)."""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path
from typing import Any

import pytest

# `tests.synth` needs the repository root on sys.path; `python -m pytest` adds it, plain
# `pytest` does not (until pyproject's [tool.pytest.ini_options] sets pythonpath = ["."]).
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.report.chromium import require_chromium  # noqa: E402
from tests.synth import make_results  # noqa: E402

SMALL_LANGS = ("ar", "en", "sw")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable for the browser tests: they skip without it, but fail under CI=true."""
    return require_chromium()


@functools.cache
def _small() -> dict[str, Any]:
    return make_results(SMALL_LANGS, items_per_language=60, n_resamples=50)


@pytest.fixture
def small_results() -> dict[str, Any]:
    """3 languages x 60 items with gates; a fresh copy per test, so tests may edit it."""
    return copy.deepcopy(_small())


@pytest.fixture
def artifacts() -> Path:
    """test-artifacts/ at the repository root (gitignored), for screenshots and pages."""
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
