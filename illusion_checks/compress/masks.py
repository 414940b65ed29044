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
def lowest_k_mask(metric: torch.Tensor, k: int) -> torch.Tensor:
    """Mask the k lowest entries of each row, ties going to the lower column: a stable sort's first k.

    Selecting the k-th value and resolving ties by position picks the same set as
    `torch.sort(metric, stable=True).indices[:, :k]`, in O(columns) per row instead of a full sort.
    """
    mask = torch.zeros_like(metric, dtype=torch.bool)
    if k <= 0:
        return mask
    kth = torch.kthvalue(metric, k, dim=-1, keepdim=True).values
    below = metric < kth
    tied = metric == kth
    room = k - below.sum(dim=-1, keepdim=True)  # how many of the tied entries still fit, leftmost first
    return below | (tied & (torch.cumsum(tied, dim=-1) <= room))


@torch.no_grad()
def row_mask(metric: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask the floor(columns * sparsity) lowest-metric weights of each row (ties: the lower column)."""
    return lowest_k_mask(metric, int(metric.shape[1] * sparsity))


@torch.no_grad()
def matrix_mask(metric: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask the floor(numel * sparsity) lowest-metric weights of the whole matrix (ties: the earlier one)."""
    return lowest_k_mask(metric.reshape(1, -1), int(metric.numel() * sparsity)).view_as(metric)


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
