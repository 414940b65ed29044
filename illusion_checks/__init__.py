"""illusion-checks: paired production/recognition probes that gate compressed LLMs.

    from illusion_checks import EvaluationSpec, GateSpec, evaluate

    outcome = evaluate(EvaluationSpec(model="smollm2-135m", compress="wanda:0.5"), GateSpec(max_dissociation=0.15))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Loaded on first use (PEP 562): importing the package (the pytest plugin does, on every pytest run)
# stays light, with no torch.
_EXPORTS = {
    "evaluate": "api",
    "EvaluationResult": "api",
    "EvaluationSpec": "spec",
    "GateSpec": "spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
