"""compress_model against straight re-implementations of the reference Wanda, SparseGPT and magnitude pruning."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.compress import compress_model, parse_spec
from illusion_checks.compress.sparsegpt import sparsegpt_prune
from tests.helpers.reference_pruning import fasterprune, find_linears, reference_magnitude_masks, reference_prune_calibrated
from tests.helpers.tiny import clone, tiny_lm


def linear_weights(model) -> dict[str, torch.Tensor]:
    return {
        f"layers.{i}.{name}": linear.weight.detach().clone()
        for i, layer in enumerate(model.model.layers)
        for name, linear in find_linears(layer).items()
    }


@pytest.mark.parametrize("spec, n, m", [("wanda:0.5", 0, 0), ("wanda:0.7", 0, 0), ("wanda:2:4", 2, 4), ("wanda:1:4", 1, 4)])
def test_wanda_masks_equal_reference_bit_for_bit(arch, calibration, spec, n, m):
    model = tiny_lm(arch)
    reference = clone(model)
    parsed = parse_spec(spec)
    compress_model(model, parsed, calibration)
    reference_prune_calibrated(reference, calibration, "wanda", parsed.sparsity or 0.0, n, m)
    ours, theirs = linear_weights(model), linear_weights(reference)
    assert ours.keys() == theirs.keys() and len(ours) == 14
    for name in ours:
        assert torch.equal(ours[name] == 0, theirs[name] == 0), name
        assert torch.equal(ours[name], theirs[name]), name


@pytest.mark.parametrize("spec, n, m", [("sparsegpt:0.5", 0, 0), ("sparsegpt:2:4", 2, 4)])
def test_sparsegpt_matches_reference_fasterprune(arch, calibration, spec, n, m):
    model = tiny_lm(arch)
    reference = clone(model)
    parsed = parse_spec(spec)
    report = compress_model(model, parsed, calibration)
    reference_prune_calibrated(reference, calibration, "sparsegpt", parsed.sparsity or 0.0, n, m)
    ours, theirs = linear_weights(model), linear_weights(reference)
    assert report.damping_retries == {}
    for name in ours:
        assert torch.equal(ours[name] == 0, theirs[name] == 0), name
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("sparsity, n, m", [(0.5, None, None), (0.3, None, None), (None, 2, 4)])
def test_sparsegpt_kernel_equals_reference_on_the_same_hessian(sparsity, n, m):
    torch.manual_seed(0)
    W = torch.randn(48, 320)  # 320 columns: two full 128-column blocks and a partial one
    X = torch.randn(1000, 320) * torch.rand(320) * 3
    H = 2 * X.t() @ X / X.shape[0]
    ours, retries = sparsegpt_prune(W, H, sparsity, n, m)
    theirs = fasterprune(W, H, sparsity or 0.0, n or 0, m or 0)
    assert retries == 0
    assert torch.equal(ours == 0, theirs == 0)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    if n is None:  # the mask is chosen per 128-column block over all rows: floor(numel * s) each
        for start in range(0, 320, 128):
            block = ours[:, start : start + 128]
            assert int((block == 0).sum()) == int(block.numel() * sparsity)


@pytest.mark.parametrize("spec, n, m", [("magnitude:0.5", 0, 0), ("magnitude:2:4", 2, 4)])
def test_magnitude_matches_wanda_repository_baseline(arch, spec, n, m):
    model = tiny_lm(arch)
    parsed = parse_spec(spec)
    reference = reference_magnitude_masks(model, parsed.sparsity or 0.0, n, m)
    report = compress_model(model, parsed, calibration=None)
    for name, weight in linear_weights(model).items():
        ours = weight == 0
        if n:
            assert torch.equal(ours, reference[name]), name
        else:
            # The baseline keeps |W| <= the k-th smallest value: the same k weights plus the k-th itself.
            k = int(weight.numel() * parsed.sparsity)
            assert int(ours.sum()) == k and int(reference[name].sum()) == k + 1, name
            assert bool((reference[name] | ~ours).all()), name
        assert report.module_sparsity[name] == pytest.approx(float(ours.float().mean()))
