"""Write a compressed model as safetensors that plain transformers can load, atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from torch import nn


def save_compressed(model: nn.Module, tokenizer, directory: str | Path) -> Path:
    """Save `model` (safetensors) and `tokenizer` to `directory`: written next to it, then renamed into place."""
    target = Path(directory).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if target.exists():
            # A directory cannot be renamed over a non-empty one: move the old one aside first.
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(retired / "model")
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
