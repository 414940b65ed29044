"""Turn an importance metric into a pruning mask (True = prune): per row, per matrix, or N:M."""

from __future__ import annotations

import torch


def check_nm(n: int, m: int, columns: int, name: str) -> None:
    """Raise ValueError unless an N:M pattern fits a weight with `columns` input features."""
    if not 1 <= n < m:
        raise ValueError(f"N:M pruning needs 1 <= N < M, but N is {n} and M is {m}")
    if columns % m:
        raise ValueError(f"N:M pruning needs M to divide the input width, but {name} has in_features={columns} and M is {m}")


@torch.no_grad()
def row_mask(metric: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask the floor(columns * sparsity) lowest-metric weights of each row (stable sort breaks ties by column)."""
    rows, columns = metric.shape
    k = int(columns * sparsity)
    mask = torch.zeros_like(metric, dtype=torch.bool)
    if k:
        order = torch.sort(metric, dim=-1, stable=True).indices
        mask.scatter_(1, order[:, :k], True)
    return mask


@torch.no_grad()
def matrix_mask(metric: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask the floor(numel * sparsity) lowest-metric weights of the whole matrix."""
    k = int(metric.numel() * sparsity)
    mask = torch.zeros(metric.numel(), dtype=torch.bool, device=metric.device)
    if k:
        order = torch.sort(metric.flatten(), stable=True).indices
        mask[order[:k]] = True
    return mask.view_as(metric)


@torch.no_grad()
def nm_mask(metric: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Mask the n lowest-metric weights in each aligned group of m consecutive input columns."""
    rows, columns = metric.shape
    assert columns % m == 0, f"M={m} must divide columns={columns}"
    groups = metric.reshape(rows, columns // m, m)
    lowest = torch.topk(groups, n, dim=-1, largest=False).indices
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, lowest, True)
    return mask.reshape(rows, columns)
