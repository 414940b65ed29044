"""Compress a reference model the way users do before deploying: prune (magnitude, Wanda, SparseGPT) or quantize.

    spec = parse_spec("wanda:2:4")            # ValueError listing the valid forms on a bad spec
    texts = calibration_texts("english", pool, eval_contexts, langs, seed=0)["*"]
    ids = calibration_batch(tokenizer, texts, nsamples=128, seqlen=2048, seed=0)
    report = compress_model(model, spec, ids if spec.needs_calibration else None, device)
    model = report.model                      # the same object, except for bnb-int8 / bnb-nf4
    save_compressed(model, tokenizer, "out/")  # safetensors, renamed into place when complete

Pruning touches every nn.Linear inside the decoder layers, never embeddings, norms or lm_head,
and runs one decoder layer at a time on `device`, feeding each layer the outputs of the
already-pruned layers before it.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562), so `from illusion_checks.compress.spec import parse_spec` in option
# parsing does not pull in torch and transformers.
_EXPORTS = {
    "CompressionReport": "apply",
    "compress_model": "apply",
    "calibration_batch": "calibration",
    "calibration_texts": "calibration",
    "fingerprint": "calibration",
    "save_compressed": "save",
    "saved_manifest": "save",
    "VALID_FORMS": "spec",
    "CompressionSpec": "spec",
    "parse_spec": "spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
