"""What a test needs that the machine may lack (a package, a program, Chromium, vLLM's Python): on a
developer's machine a missing one skips the test, with the reason; under CI (CI=true, 1 or yes, as CI
services set it) it fails the test, so a CI run can never pass by skipping what it was meant to run."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from illusion_checks.backends.vllm.backend import PYTHON_ENV as VLLM_PYTHON_ENV

CHROMIUM = "/usr/bin/chromium"  # the Debian package `make browser` installs


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether CI=true (or 1, yes) is set, as CI services do."""
    return environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip with `reason`, or fail under CI: the test must run there."""
    if in_ci(environ):
        pytest.fail(f"{reason}; CI is set, so this test must run, not skip", pytrace=False)
    pytest.skip(reason)


def need_module(name: str, environ: Mapping[str, str] = os.environ) -> ModuleType:
    """The imported module, or `missing` (pytest.importorskip that fails under CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        missing(f"the Python package {name} is not installed ({error}); `make install` installs it", environ)


def need_executable(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """The program's path on PATH, or `missing`."""
    path = shutil.which(name, path=environ.get("PATH"))
    if path is None:
        missing(f"{name} is not installed", environ)
    return path


def require_chromium(path: str = CHROMIUM, environ: Mapping[str, str] = os.environ) -> str:
    """The Chromium executable for the report's browser tests, or `missing`."""
    if not os.path.exists(path):
        missing(f"{path} is absent (install the Debian package: make browser)", environ)
    return path


def need_vllm(environ: Mapping[str, str] = os.environ) -> str:
    """The Python with vLLM (`make vllm` builds .venv-vllm), or `missing`."""
    python = environ.get(VLLM_PYTHON_ENV)
    if not python or not Path(python).exists():
        missing(f"${VLLM_PYTHON_ENV} names no Python with vLLM (make vllm builds .venv-vllm)", environ)
    return python


def need_llmc(environ: Mapping[str, str] = os.environ) -> str:
    """The Python with llmcompressor (`make llmc` builds .venv-llmc), or `missing`."""
    from illusion_checks.compress.llmc.runner import PYTHON_ENV as LLMC_PYTHON_ENV

    python = environ.get(LLMC_PYTHON_ENV)
    if not python or not Path(python).exists():
        missing(f"${LLMC_PYTHON_ENV} names no Python with llmcompressor (make llmc builds .venv-llmc)", environ)
    return python
