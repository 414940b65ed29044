"""Checks that run before any model loads: outputs can be written, and the compression spec fits the model.

A run may probe a reference model for most of an hour; an input that was wrong from the start
must stop it in the first second, with one line naming the option and its value.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


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


def model_widths(config: Any) -> dict[str, int]:
    """Input widths of the decoder Linears that pruning touches, by config field, read from a
    transformers config (no weights): q/k/v/gate/up read hidden_size, down reads
    intermediate_size, o_proj reads num_attention_heads*head_dim."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    widths = {name: value for name in ("hidden_size", "intermediate_size", "moe_intermediate_size")
              if isinstance(value := getattr(text, name, None), int)}
    heads, head_dim = getattr(text, "num_attention_heads", None), getattr(text, "head_dim", None)
    if isinstance(heads, int) and isinstance(head_dim, int):
        widths["num_attention_heads*head_dim"] = heads * head_dim
    return widths


def check_spec_fits(spec_text: str, source: str, trust_remote_code: bool = False) -> None:
    """Raise ValueError unless `spec_text`'s N:M pattern (if any) fits every pruned width of the model at
    `source` (a directory or hub id, as `models.resolve_source` returns it)."""
    from illusion_checks.compress.spec import parse_spec

    spec = parse_spec(spec_text)
    if not spec.is_structured:
        return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"--illusion-compress={spec_text}: cannot read the model's config at {source} to check "
                         f"the N:M widths ({type(error).__name__}: {reason})") from error
    for name, width in model_widths(config).items():
        if width % spec.m:
            raise ValueError(f"--illusion-compress={spec_text}: N:M pruning needs M={spec.m} to divide every pruned "
                             f"layer's input width, but the model's {name} is {width}")
