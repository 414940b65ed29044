"""A compressed-tensors checkpoint (llm-compressor's) on the CPU: loaded dequantized, its activation
quantization kept.

transformers' `CompressedTensorsConfig(dequantize=True)` turns packed int4 / int8 / fp8 weights into
dense ones and leaves plain `nn.Linear`s: the inputs' quantization (W8A8's dynamic per-token int8,
FP8_DYNAMIC's per-token fp8), which vLLM runs, would silently be gone, and the hf backend would probe
a W8A16 model in place of the W8A8 one. A forward pre-hook puts it back on every targeted Linear:
each input row (token) is scaled by its absolute maximum, rounded to the grid and scaled back, as the
dynamic scheme does. Static or asymmetric activation schemes are refused at load, never approximated."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

_FP8_MAX = 448.0  # float8_e4m3fn


def compressed_tensors(source: str, device: Any) -> dict[str, Any] | None:
    """On the CPU, a compressed-tensors checkpoint (llm-compressor's) loads dequantized: its packed int4 /
    int8 / fp8 weights become dense ones in the run's dtype, and its dynamic activation quantization
    (W8A8's per-token int8) is put back by hooks (`simulate_input_quantization`). Its quantization config,
    or None: not one, or not on the CPU (elsewhere transformers runs it compressed)."""
    config = Path(source) / "config.json"
    if device.type != "cpu" or not config.is_file():
        return None
    try:
        quantization = json.loads(config.read_text(encoding="utf-8")).get("quantization_config") or {}
    except (OSError, ValueError):
        return None
    return quantization if quantization.get("quant_method") == "compressed-tensors" else None


def _fake_quantize(x: torch.Tensor, kind: str, bits: int, per_token: bool) -> torch.Tensor:
    """`x` on a symmetric int grid (or fp8's), scaled per token (last dim) or per tensor, and back."""
    amax = x.abs().amax(dim=-1, keepdim=True) if per_token else x.abs().amax()
    if kind == "int":
        top = 2 ** (bits - 1) - 1
        scale = (amax / top).clamp(min=torch.finfo(torch.float32).tiny)
        return (torch.clamp(torch.round(x / scale), -top - 1, top) * scale).to(x.dtype)
    scale = (amax / _FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    return ((x / scale).clamp(-_FP8_MAX, _FP8_MAX).to(torch.float8_e4m3fn).to(x.dtype) * scale).to(x.dtype)


def _matches(name: str, module: nn.Module, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.match(pattern[3:], name):
                return True
        elif pattern == name or pattern == type(module).__name__:
            return True
    return False


def _checked(where: str, args: dict[str, Any]) -> tuple[str, int, bool]:
    kind, bits, strategy = args.get("type"), args.get("num_bits"), args.get("strategy")
    if not args.get("dynamic") or not args.get("symmetric", True) or kind not in ("int", "float") \
            or strategy not in ("token", "tensor") or (kind == "float" and bits != 8) or not isinstance(bits, int):
        raise ValueError(f"{where}: input activations {kind}{bits} {strategy} (dynamic={args.get('dynamic')}, "
                             f"symmetric={args.get('symmetric')}) cannot be simulated on the dequantized CPU model; "
                             "only dynamic symmetric per-token or per-tensor int / fp8 can")
    return kind, bits, strategy == "token"


def simulate_input_quantization(model: nn.Module, quantization: dict[str, Any], where: str) -> int:
    """Hook every Linear a config group with input activations targets (less `ignore`); the count hooked."""
    ignore = list(quantization.get("ignore") or [])
    hooked = 0
    for group in (quantization.get("config_groups") or {}).values():
        args = group.get("input_activations")
        if not args:
            continue
        kind, bits, per_token = _checked(where, args)
        targets = list(group.get("targets") or [])

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], kind=kind, bits=bits, per_token=per_token):
            return (_fake_quantize(inputs[0], kind, bits, per_token), *inputs[1:])

        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and _matches(name, module, targets) and not _matches(name, module, ignore):
                module.register_forward_pre_hook(hook)
                hooked += 1
    return hooked
