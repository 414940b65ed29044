"""Where the browser tests find Chromium, and what happens when it is missing."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

CHROMIUM = "/usr/bin/chromium"  # the Debian package `make browser` installs


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether CI=true (or 1, yes) is set, as CI services do."""
    return environ.get("CI", "").lower() in ("1", "true", "yes")


def require_chromium(path: str = CHROMIUM, environ: Mapping[str, str] = os.environ) -> str:
    """The Chromium executable. Absent, the browser tests skip on a developer's machine but fail
    under CI, so a CI run cannot pass without them."""
    if os.path.exists(path):
        return path
    message = f"{path} is absent (install the Debian package: make browser)"
    if in_ci(environ):
        pytest.fail(f"{message}; CI is set, so the browser tests must run, not skip", pytrace=False)
    pytest.skip(message)
