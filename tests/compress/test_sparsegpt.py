"""SparseGPT's dampening: retried with a warning on a non-positive-definite Hessian, never silently."""

from __future__ import annotations

import logging

import pytest
import torch

from illusion_checks.compress.sparsegpt import inverse_hessian_factor, sparsegpt_prune


def indefinite_hessian(columns: int = 32) -> torch.Tensor:
    """Symmetric with one eigenvalue of -0.05 x the mean diagonal: 1% dampening fails, 10% succeeds."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(columns, columns))
    eigenvalues = torch.ones(columns)
    eigenvalues[0] = -0.05
    return q @ torch.diag(eigenvalues) @ q.t()


def test_retries_with_more_damping_and_says_so(caplog):
    H = indefinite_hessian()
    W = torch.randn(8, 32)
    with caplog.at_level(logging.WARNING, logger="illusion_checks.compress.sparsegpt"):
        with pytest.warns(RuntimeWarning, match="not positive definite with 0.01 dampening; retrying with 0.1"):
            pruned, retries = sparsegpt_prune(W, H, 0.5, None, None, name="layers.3.mlp.up_proj")
    assert retries == 1
    assert "layers.3.mlp.up_proj" in caplog.text
    assert int((pruned == 0).sum()) == W.numel() // 2


def test_fails_loudly_when_no_damping_helps():
    H = torch.full((16, 16), float("nan"))
    with pytest.warns(RuntimeWarning):
        with pytest.raises(RuntimeError, match="not positive definite even with 100 dampening"):
            inverse_hessian_factor(H, 0.01, "layers.0.self_attn.q_proj")


def test_dead_inputs_are_zeroed_and_do_not_break_cholesky():
    torch.manual_seed(0)
    x = torch.randn(500, 16)
    x[:, 3] = 0  # an input feature that never fires
    H = 2 * x.t() @ x / 500
    pruned, retries = sparsegpt_prune(torch.randn(4, 16), H, 0.25, None, None)
    assert retries == 0 and (pruned[:, 3] == 0).all()
