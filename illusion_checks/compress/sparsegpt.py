"""SparseGPT (Frantar & Alistarh, 2023): prune with OBS error propagation through the inverse Hessian."""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

import torch

from .masks import matrix_mask

logger = logging.getLogger(__name__)

# Dampening tried in turn when H + damp*I is not positive definite: 1% as in the paper, then more.
DAMPENING_STEPS = (0.01, 0.1, 1.0, 10.0, 100.0)


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Run fp32 matmuls in full precision: TF32 is too coarse for Cholesky of a Hessian."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.fp32_precision, cudnn.fp32_precision)
    matmul.fp32_precision, cudnn.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision, cudnn.fp32_precision = saved


@torch.no_grad()
def inverse_hessian_factor(hessian: torch.Tensor, percdamp: float, name: str) -> tuple[torch.Tensor, int]:
    """Upper Cholesky factor of (H + damp I)^-1, raising the damping until H is positive definite."""
    diag = torch.arange(hessian.shape[0], device=hessian.device)
    mean_diag = torch.mean(torch.diag(hessian))
    steps = [percdamp] + [s for s in DAMPENING_STEPS if s > percdamp]
    for retries, damp in enumerate(steps):
        damped = hessian.clone()
        damped[diag, diag] += damp * mean_diag
        lower, info = torch.linalg.cholesky_ex(damped)
        if info.item() == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if info.item() == 0:
                return upper, retries
        if retries + 1 < len(steps):
            message = (
                f"SparseGPT: the Hessian of {name} is not positive definite with {damp:g} dampening; "
                f"retrying with {steps[retries + 1]:g}"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            logger.warning(message)
    raise RuntimeError(
        f"SparseGPT: the Hessian of {name} is not positive definite even with {steps[-1]:g} dampening; "
        "the calibration activations are degenerate (check the calibration batch)"
    )


@torch.no_grad()
def _block_mask(block: torch.Tensor, hinv_diag: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask the floor(numel * sparsity) weights of a column block with the least OBS error w^2 / [H^-1]_jj^2."""
    error = block**2 / hinv_diag.reshape(1, -1) ** 2
    # The reference keeps error <= the k-th value, which prunes k + 1; we prune exactly k (none at sparsity 0).
    return matrix_mask(error, sparsity)


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float | None,
    n: int | None,
    m: int | None,
    name: str = "weight",
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, int]:
    """Return the pruned weight (fp32) and how many extra dampening steps the Hessian needed."""
    if n is not None:
        blocksize -= blocksize % m  # N:M groups must not straddle two column blocks
    W = weight.detach().float().clone()
    H = hessian.float().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1  # inputs that are always zero: keep H invertible, their weights do not matter
    W[:, dead] = 0
    with no_tf32():
        Hinv, retries = inverse_hessian_factor(H, percdamp, name)
        columns = W.shape[1]
        for i1 in range(0, columns, blocksize):
            i2 = min(i1 + blocksize, columns)
            W1 = W[:, i1:i2].clone()
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            hinv_diag = torch.diag(Hinv1)
            if n is None:
                mask1 = _block_mask(W1, hinv_diag, sparsity)
            else:
                mask1 = torch.zeros_like(W1, dtype=torch.bool)
            for i in range(i2 - i1):
                if n is not None and i % m == 0:
                    # N:M groups are chosen just in time, on weights already updated by earlier columns.
                    error = W1[:, i : i + m] ** 2 / hinv_diag[i : i + m].reshape(1, -1) ** 2
                    mask1.scatter_(1, i + torch.topk(error, n, dim=1, largest=False).indices, True)
                # The reference's err = (w - q) / d with q = w where kept and 0 where pruned.
                err1 = torch.where(mask1[:, i], W1[:, i], 0.0) / Hinv1[i, i]
                # Spread this column's pruning error over the columns not yet visited (the OBS update).
                W1[:, i:].addr_(err1, Hinv1[i, i:], alpha=-1)
                Err1[:, i] = err1
            # Kept weights were never changed by their own column's update (err = 0 there): W1 is q.
            W[:, i1:i2] = W1.masked_fill(mask1, 0)
            W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W, retries
