"""Backends by name: each engine is imported only when a run chooses it, so the core and an
inactive pytest run never import torch, transformers or vLLM."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from illusion_checks.backends.base import Engine, ServedEngine
    from illusion_checks.served import ServerSettings

# name -> "module:class" of its Engine
ENGINES = {
    "hf": "illusion_checks.backends.hf.engine:HFEngine",
    "vllm": "illusion_checks.backends.vllm.engine:VLLMEngine",
}
BACKENDS = tuple(ENGINES)


def engine(name: str) -> "Engine":
    """The engine called `name` (ValueError naming --illusion-backend for an unknown one)."""
    if name not in ENGINES:
        raise ValueError(f"--illusion-backend: '{name}' is not one of {', '.join(BACKENDS)}")
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def served_engine(settings: "ServerSettings", option: str, trust_remote_code: bool = False) -> "ServedEngine":
    """The engine for models served over HTTP (`http(s)://HOST[:PORT]/v1[#MODEL]`) named by `option`."""
    # Imported when a served model is named, like the engines above: option parsing imports this module.
    from illusion_checks.backends.openai.engine import OpenAIEngine

    return OpenAIEngine(settings, option, trust_remote_code)
