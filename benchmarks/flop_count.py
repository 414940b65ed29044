"""Count the tokens a causal LM processes and the FLOPs they cost; measure the fp32 matmul peak.

Torch only, so both the project's environment and lm-eval's (a separate virtual environment)
import it and count the same way: forward hooks on the top model, whoever calls it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class ModelShape:
    """What one token costs: decoder-body matmuls, one LM-head row, attention per cached position."""

    body_params: int
    head_params: int
    layers: int
    attn_width: int

    @classmethod
    def of(cls, model: Any) -> "ModelShape":
        """Read the shape off a transformers causal LM (embedding lookups are not matmuls)."""
        config = getattr(model.config, "text_config", model.config)
        embed = model.get_input_embeddings().weight.numel()
        head = model.get_output_embeddings().weight.numel()
        total = sum(p.numel() for p in model.parameters())
        tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
        body = total - embed - (0 if tied else head)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(body, head, config.num_hidden_layers, config.num_attention_heads * head_dim)


@dataclass
class Work:
    """Running totals over forward passes. `tokens` excludes padding, `positions` includes it;
    `steps` are decoding calls (one new token per row), whose rows and seconds are kept apart."""

    tokens: int = 0
    positions: int = 0
    logit_rows: int = 0
    attended: int = 0
    flops: float = 0.0
    calls: int = 0
    forward_seconds: float = 0.0
    steps: int = 0
    step_rows: int = 0
    step_seconds: float = 0.0

    def add(self, other: "Work") -> "Work":
        """Sum of two totals (e.g. lm-eval's loglikelihood and generate_until parts)."""
        return Work(**{name: getattr(self, name) + getattr(other, name) for name in self.__dataclass_fields__})

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> "Work":
        return cls(**{name: type(getattr(cls(), name))(data[name]) for name in cls.__dataclass_fields__})


def _input_ids(args: tuple, kwargs: dict) -> torch.Tensor | None:
    # lm-eval calls model(inps) positionally; generate and the engine pass keywords.
    ids = kwargs.get("input_ids")
    if ids is None and args and isinstance(args[0], torch.Tensor):
        ids = args[0]
    if ids is None and kwargs.get("inputs_embeds") is not None:
        ids = kwargs["inputs_embeds"][..., 0]
    return ids


def _cached_length(kwargs: dict) -> int:
    cache = kwargs.get("cache", kwargs.get("past_key_values"))  # lm-eval's own transformers may predate `cache`
    return int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0


@dataclass
class WorkCounter:
    """Hooks that add each forward pass's real tokens, logit rows and attention to `work`."""

    model: Any
    shape: ModelShape
    work: Work = field(default_factory=Work)
    _pending: list[tuple[int, int, int, int, float]] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)

    def __enter__(self) -> "WorkCounter":
        self._handles = [self.model.register_forward_pre_hook(self._before, with_kwargs=True),
                         self.model.register_forward_hook(self._after, with_kwargs=True)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()

    def _before(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = _input_ids(args, kwargs)
        if ids is None:
            return
        rows, new = ids.shape[0], ids.shape[1]
        mask = kwargs.get("attention_mask")
        if mask is None or mask.dim() != 2:
            # No mask (lm-eval's right-padded loglikelihood batches, or generate on unpadded rows):
            # every position counts, cached ones included.
            mask = torch.ones(rows, _cached_length(kwargs) + new, dtype=torch.long)
        mask = mask.detach().to("cpu", torch.long)
        real = mask[:, -new:]
        # A new token attends to every real position up to itself, cached ones included.
        attended = int((mask.cumsum(-1)[:, -new:] * real).sum())
        self._pending.append((new, int(real.sum()), rows * new, attended, time.perf_counter()))

    def _after(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        if not self._pending:
            return
        new, tokens, positions, attended, started = self._pending.pop()
        seconds = time.perf_counter() - started
        logits = output.logits if hasattr(output, "logits") else output[0]
        # Logits for the whole input: real positions only; a kept tail (logits_to_keep): every row.
        rows = tokens if logits.shape[1] == new else logits.shape[0] * logits.shape[1]
        s, w = self.shape, self.work
        w.tokens += tokens
        w.positions += positions
        w.forward_seconds += seconds
        if new == 1:
            w.steps += 1
            w.step_rows += positions
            w.step_seconds += seconds
        w.logit_rows += rows
        w.attended += attended
        w.calls += 1
        # QK^T and AV: 2 FLOPs per multiply-add, each over attn_width per attended position.
        w.flops += 2.0 * (s.body_params * tokens + s.head_params * rows) + 4.0 * s.layers * s.attn_width * attended


def matmul_peak(size: int = 2048, repeats: int = 8) -> float:
    """The best fp32 FLOP/s of a large square torch matmul on this machine (current threads)."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)  # warm-up: thread pool start, page faults
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2.0 * size ** 3 / (time.perf_counter() - start))
    return best
