"""Magnitude pruning: the Wanda repository's baseline, |W| thresholded over each whole weight matrix."""

from __future__ import annotations

import torch

from .masks import matrix_mask, nm_mask


@torch.no_grad()
def magnitude_mask(weight: torch.Tensor, sparsity: float | None, n: int | None, m: int | None) -> torch.Tensor:
    """Mask the smallest |W|: floor(numel * sparsity) per matrix, or n per aligned group of m."""
    metric = weight.abs().float()
    if n is not None:
        return nm_mask(metric, n, m)
    # Wanda's prune_magnitude keeps |W| <= the k-th value, which prunes k + 1 weights; we prune exactly k.
    return matrix_mask(metric, sparsity)
