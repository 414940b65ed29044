"""On one layer and one mask budget, output reconstruction error ranks SparseGPT < Wanda < magnitude."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.compress.magnitude import magnitude_mask
from illusion_checks.compress.sparsegpt import sparsegpt_prune
from illusion_checks.compress.wanda import wanda_mask


def layer_and_inputs(seed: int):
    """A Linear whose inputs, like real LLM activations, have uneven channel scales and correlated features.

    Uneven scales are what Wanda exploits over magnitude; correlations are what SparseGPT's full
    Hessian exploits over Wanda's diagonal one (with independent features the two nearly tie).
    """
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(96, 256, generator=generator) / 16
    scales = torch.exp(0.5 * torch.randn(256, generator=generator))
    scales[torch.randperm(256, generator=generator)[:8]] *= 5  # a few outlier features
    mixing = torch.eye(256) + torch.randn(256, 256, generator=generator) / 16
    x = (torch.randn(2048, 256, generator=generator) @ mixing) * scales
    return weight, x


def reconstruction_error(weight: torch.Tensor, pruned: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x @ weight.t() - x @ pruned.t()) ** 2).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sparsity, n, m", [(0.5, None, None), (None, 2, 4)])
def test_sparsegpt_beats_wanda_beats_magnitude(seed, sparsity, n, m):
    weight, x = layer_and_inputs(seed)
    sq_mean = x.pow(2).mean(0)
    hessian = 2 * x.t() @ x / x.shape[0]
    magnitude = weight.masked_fill(magnitude_mask(weight, sparsity, n, m), 0)
    wanda = weight.masked_fill(wanda_mask(weight, sq_mean, sparsity, n, m), 0)
    sparsegpt, _ = sparsegpt_prune(weight, hessian, sparsity, n, m)
    for pruned in (magnitude, wanda, sparsegpt):  # the same budget: half the weights
        assert int((pruned == 0).sum()) == weight.numel() // 2
    errors = [reconstruction_error(weight, p, x) for p in (sparsegpt, wanda, magnitude)]
    assert errors[0] < errors[1] < errors[2], errors
