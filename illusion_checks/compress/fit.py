"""Whether an N:M compression spec fits a model, read from its transformers config alone (no
weights), so a wrong spec stops the run before any model loads."""

from __future__ import annotations

from typing import Any


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
    `source` (a directory or hub id, as `backends.hf.load.resolve_source` returns it)."""
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
