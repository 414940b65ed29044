"""compress_model: apply one CompressionSpec to a loaded causal LM and report what it did."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .prune import Progress, prune_model
from .quant import QUANTO_WEIGHTS, bnb_model, quanto_model, rtn_model
from .spec import CompressionSpec, parse_spec


@dataclass(frozen=True)
class CompressionReport:
    """What compress_model did. `model` is the compressed model: the input object, except for bnb and quanto specs."""

    spec: CompressionSpec
    model: nn.Module
    wall_time_s: float
    device: str
    layer_sparsity: tuple[float, ...] = ()
    module_sparsity: dict[str, float] = field(default_factory=dict)
    damping_retries: dict[str, int] = field(default_factory=dict)
    calibration_shape: tuple[int, ...] | None = None


def _check_calibration(spec: CompressionSpec, calibration: torch.Tensor | None) -> None:
    if calibration is None:
        if spec.needs_calibration:
            raise ValueError(f"{spec} needs calibration ids (a LongTensor [nsamples, seqlen]), but calibration is None")
        return
    if calibration.dim() != 2 or calibration.dtype != torch.long or calibration.shape[0] < 1:
        raise ValueError(
            f"calibration must be a LongTensor [nsamples, seqlen] with nsamples >= 1, "
            f"but is {calibration.dtype} of shape {tuple(calibration.shape)}"
        )


@torch.no_grad()
def compress_model(
    model: nn.Module,
    spec: CompressionSpec | str,
    calibration: torch.Tensor | None = None,
    device: torch.device = torch.device("cpu"),
    progress: Progress | None = None,
    batch_size: int = 1,
) -> CompressionReport:
    """Compress `model` with `spec`; pruning and rtn-int4 mutate it in place, bnb and quanto specs return a new model.

    Always continue with `report.model`. Pruning runs decoder layer by decoder layer on `device`
    (calibration batches of `batch_size` sequences); `progress(done_layers, total_layers)` is called
    after each layer (pruning and rtn-int4).
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    device = torch.device(device)
    _check_calibration(spec, calibration)
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        if spec.is_noop:
            result_model, extra = model, {}
        elif spec.is_pruning:
            result = prune_model(model, spec, calibration, device, batch_size, progress)
            result_model = model
            extra = {
                "layer_sparsity": tuple(result.layer_sparsity),
                "module_sparsity": result.module_sparsity,
                "damping_retries": result.damping_retries,
            }
        elif spec.method == "rtn-int4":
            rtn_model(model, device, progress)
            result_model, extra = model, {}
        elif spec.method in QUANTO_WEIGHTS:
            result_model, extra = quanto_model(model, spec, device), {}
        else:
            result_model, extra = bnb_model(model, spec, device), {}
    finally:
        model.train(was_training)
    return CompressionReport(
        spec=spec,
        model=result_model,
        wall_time_s=time.perf_counter() - start,
        device=str(device),
        calibration_shape=tuple(calibration.shape) if calibration is not None else None,
        **extra,
    )
