"""Shared fixtures: tiny model directories built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    from tests.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_models():
    """One tiny (model, tokenizer) per architecture."""
    from tests.tiny import ARCHS, tiny_model

    return {arch: tiny_model(arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def taught_model():
    """A tiny llama that answers four English fixture items correctly, plus two it never saw
    (tests.tiny.taught_english_model); trained once per session, in a few seconds."""
    from tests.tiny import taught_english_model

    return taught_english_model()
