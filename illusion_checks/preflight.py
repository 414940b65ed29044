"""Checks that run before any model loads: outputs can be written (the compression spec against the
model's widths is checked by the backend: `compress/fit.py` for Hugging Face checkpoints).

A run may probe a reference model for most of an hour; an input that was wrong from the start
must stop it in the first second, with one line naming the option and its value.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def check_writable(option: str, path: str | Path, is_dir: bool = False) -> None:
    """Raise ValueError naming `option` and `path` unless it can be written: its folder is created if
    missing, and a temporary file is made and removed there (as the atomic writers will do)."""
    target = Path(path).expanduser().resolve()
    if target.exists() and target.is_dir() != is_dir:
        kind = "a file" if is_dir else "a folder"
        raise ValueError(f"{option}: {target} is {kind}; pass a {'folder' if is_dir else 'file'} path")
    blocker = next((parent for parent in target.parents if parent.exists() and not parent.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"{option}: cannot write {target}: {blocker} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as error:
        raise ValueError(f"{option}: cannot write {target} ({error.strerror or error}); "
                         "pass a path in a writable folder") from error
