"""The Python that runs an engine's worker process: an engine that pins another transformers than the
tool's (vLLM, llm-compressor) runs in its own environment, named by an environment variable.

Engine-free and import-free (stdlib only), on the bottom floor, for `backends/vllm/` and `compress/llmc/`."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path


def worker_python(env: str, module: str, name: str, flag: str, install: str, error: type[Exception]) -> str:
    """`$env` (which must exist), else this Python when it can import `module`; else `error`, one line
    naming `flag`, the variable and how to build the environment (`install`)."""
    chosen = os.environ.get(env)
    if chosen:
        if not Path(chosen).exists():
            raise error(f"{flag}: ${env} is {chosen!r}, which does not exist")
        return chosen
    if importlib.util.find_spec(module) is not None:
        return sys.executable
    raise error(f"{flag}: {name} is not importable here; install it in its own environment and set ${env} to that "
                f"environment's python ({install})")
