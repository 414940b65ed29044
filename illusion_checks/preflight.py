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


def check_folder(name: str, path: str | Path) -> None:
    """Raise ValueError naming `name` (an option or environment variable) and `path` unless it is a
    folder this run can write in: made if missing, a temporary file created and removed there."""
    target = Path(path).expanduser().resolve()
    blocker = next((place for place in (target, *target.parents) if place.exists() and not place.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == target else f"is under {blocker}, which is a file"
        raise ValueError(f"{name}: {target} {where}, not a folder; name a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as error:
        raise ValueError(f"{name}: cannot write in {target} ({error.strerror or error}); name a writable folder") from error

