"""Shared synthetic results for the report tests (built once, handed out as deep copies)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
import functools
import sys
from pathlib import Path
from typing import Any

import pytest

# `tests.helpers.synth` needs the repository root on sys.path; `python -m pytest` adds it, plain
# `pytest` does not (until pyproject's [tool.pytest.ini_options] sets pythonpath = ["."]).
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.browser import CHROMIUM_ARGS  # noqa: E402
from tests.helpers.need import require_chromium  # noqa: E402
from tests.helpers.synth import make_results  # noqa: E402

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


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    """One headless Chromium for every browser test of the session."""
    # Imported here so collection works without the dev extra; a missing package then fails
    # these tests loudly rather than skipping them.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()
