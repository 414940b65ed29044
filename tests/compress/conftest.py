"""Fixtures for the compress tests: tiny models come from tests/helpers/tiny.py."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import ARCHS, tiny_calibration


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are faster single-threaded, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture
def calibration() -> torch.Tensor:
    return tiny_calibration()
