"""Write a compressed model as safetensors that plain transformers can load, atomically."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from torch import nn

# What a saved directory holds, written with it, so a later run can tell it need not save again.
MANIFEST = "illusion-compressed.json"


def save_compressed(model: nn.Module, tokenizer, directory: str | Path,
                    manifest: Mapping[str, Any] | None = None) -> Path:
    """Save `model` (safetensors), `tokenizer` and `manifest` (as MANIFEST) to `directory`: written next
    to it, then renamed into place."""
    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    return write_atomically(directory, write, manifest)


def copy_saved(source: str | Path, directory: str | Path, manifest: Mapping[str, Any] | None = None) -> Path:
    """Copy a saved model folder (an engine that holds no weights in this process saves this way)."""
    return write_atomically(directory, lambda staging: shutil.copytree(source, staging, dirs_exist_ok=True),
                             manifest)


def write_atomically(directory: str | Path, write: Any, manifest: Mapping[str, Any] | None) -> Path:
    """`write(staging)` fills a new folder beside `directory`, `manifest` is added, and the folder is renamed
    into place: `directory` holds a complete model or what it held before, never half of one."""
    target = Path(directory).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(staging)
        if manifest is not None:
            (staging / MANIFEST).write_text(json.dumps(dict(manifest), indent=1), encoding="utf-8")
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


def saved_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The manifest `save_compressed` wrote into `directory`, or None (nothing saved there, or unreadable)."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None
