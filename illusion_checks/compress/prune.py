"""Prune a causal LM's decoder layers one at a time, each on the inputs produced by the already-pruned layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .catcher import LayerCall, call_layer, capture_layer_inputs, decoder_layers
from .magnitude import magnitude_mask
from .masks import check_nm
from .sparsegpt import sparsegpt_prune
from .spec import CompressionSpec
from .stats import InputStats
from .wanda import wanda_mask

Progress = Callable[[int, int], None]


@dataclass
class PruneResult:
    """What pruning did: zero fraction per decoder layer and per Linear, and SparseGPT's dampening retries."""

    layer_sparsity: list[float] = field(default_factory=list)
    module_sparsity: dict[str, float] = field(default_factory=dict)
    damping_retries: dict[str, int] = field(default_factory=dict)


def layer_linears(layer: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear inside one decoder layer, by name relative to the layer."""
    return {name: module for name, module in layer.named_modules() if isinstance(module, nn.Linear)}


def check_structure(layers: nn.ModuleList, spec: CompressionSpec) -> None:
    """Raise ValueError before any work if an N:M pattern does not divide some Linear's input width."""
    if not spec.is_structured:
        return
    for i, layer in enumerate(layers):
        for name, linear in layer_linears(layer).items():
            check_nm(spec.n, spec.m, linear.in_features, f"layers.{i}.{name}")


@torch.no_grad()
def run_layer(layer: nn.Module, hidden: list[torch.Tensor], calls: list[LayerCall]) -> list[torch.Tensor]:
    """The layer's outputs for each calibration batch."""
    return [call_layer(layer, h, call) for h, call in zip(hidden, calls)]


@torch.no_grad()
def collect_stats(
    layer: nn.Module, linears: dict[str, nn.Linear], hidden: list[torch.Tensor], calls: list[LayerCall], kind: str
) -> InputStats:
    """One pass of the (still dense) layer over the calibration batches, accumulating its Linears' input statistics."""
    with InputStats(linears, kind) as stats:
        for h, call in zip(hidden, calls):
            call_layer(layer, h, call)
    return stats


@torch.no_grad()
def prune_linear(linear: nn.Linear, spec: CompressionSpec, stats: InputStats | None, name: str, label: str) -> int:
    """Prune one Linear in place with the spec's method; return SparseGPT's dampening retries (else 0)."""
    weight = linear.weight
    if spec.method == "sparsegpt":
        pruned, retries = sparsegpt_prune(weight, stats.hessian(name), spec.sparsity, spec.n, spec.m, name=label)
        weight.copy_(pruned.to(weight.dtype))
        return retries
    if spec.method == "wanda":
        mask = wanda_mask(weight, stats.sq_mean(name), spec.sparsity, spec.n, spec.m)
    else:
        mask = magnitude_mask(weight, spec.sparsity, spec.n, spec.m)
    weight.masked_fill_(mask, 0)
    return 0


def _zero_fraction(weights: list[torch.Tensor]) -> float:
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))


@torch.no_grad()
def prune_model(
    model: nn.Module,
    spec: CompressionSpec,
    calibration: torch.Tensor | None,
    device: torch.device,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> PruneResult:
    """Prune every Linear in the decoder layers in place; the device holds one layer plus the activations."""
    layers = decoder_layers(model)
    check_structure(layers, spec)
    result = PruneResult()
    kind = {"wanda": "sq", "sparsegpt": "hessian"}.get(spec.method)
    inputs = None
    if kind is not None:
        if calibration is None:
            raise ValueError(f"{spec} needs calibration ids (a LongTensor [nsamples, seqlen]), but calibration is None")
        inputs = capture_layer_inputs(model, layers, calibration, device, batch_size)
        hidden = inputs.hidden
    for i, layer in enumerate(layers):
        home = next(layer.parameters()).device
        layer.to(device)
        try:
            linears = layer_linears(layer)
            stats = collect_stats(layer, linears, hidden, inputs.calls[i], kind) if kind else None
            for name, linear in linears.items():
                label = f"layers.{i}.{name}"
                retries = prune_linear(linear, spec, stats, name, label)
                if retries:
                    result.damping_retries[label] = retries
                result.module_sparsity[label] = _zero_fraction([linear.weight])
            del stats
            if kind is not None and i + 1 < len(layers):
                hidden = run_layer(layer, hidden, inputs.calls[i])  # the next layer sees this layer pruned
            result.layer_sparsity.append(_zero_fraction([linear.weight for linear in linears.values()]))
        finally:
            layer.to(home)  # also on failure: a CPU-resident model must not keep a layer on the GPU
        if progress is not None:
            progress(i + 1, len(layers))
    return result
