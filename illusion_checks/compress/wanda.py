"""Wanda (Sun et al., 2024): prune |W| x ||X_j||, compared within each output row."""

from __future__ import annotations

import torch

from .masks import nm_mask, row_mask


@torch.no_grad()
def wanda_metric(weight: torch.Tensor, sq_mean: torch.Tensor) -> torch.Tensor:
    """|W_ij| x sqrt(mean over calibration tokens of x_j^2), in fp32."""
    return weight.abs().float() * torch.sqrt(sq_mean.float()).reshape(1, -1)


@torch.no_grad()
def wanda_mask(
    weight: torch.Tensor, sq_mean: torch.Tensor, sparsity: float | None, n: int | None, m: int | None
) -> torch.Tensor:
    """Mask floor(columns * sparsity) weights per row, or n per aligned group of m, by the Wanda metric."""
    metric = wanda_metric(weight, sq_mean)
    if n is not None:
        return nm_mask(metric, n, m)
    return row_mask(metric, sparsity)
