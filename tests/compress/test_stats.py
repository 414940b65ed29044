"""Activation statistics: batch-size invariance, and layer i+1 seeing layer i already pruned."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.compress import compress_model, parse_spec
from illusion_checks.compress.catcher import capture_layer_inputs, decoder_layers
from illusion_checks.compress.prune import collect_stats, layer_linears, run_layer
from illusion_checks.compress.stats import InputStats
from illusion_checks.compress.wanda import wanda_mask
from tests.helpers.tiny import clone, tiny_lm

CPU = torch.device("cpu")


@pytest.mark.parametrize("kind", ["sq", "hessian"])
def test_statistics_identical_in_batches_of_1_or_8(kind):
    torch.manual_seed(0)
    x = torch.randn(16, 20, 24) * torch.rand(24) * 5
    linears = {"a": torch.nn.Linear(24, 8), "b": torch.nn.Linear(24, 8)}
    results = []
    for batch_size in (1, 8):
        with InputStats(linears, kind) as stats:
            for chunk in x.split(batch_size):
                for linear in linears.values():  # both Linears see the same tensor, as q/k/v do
                    linear(chunk)
        read = stats.sq_mean if kind == "sq" else stats.hessian
        results.append(read("b"))
        assert stats.owner == {"a": "a", "b": "a"}  # one shared accumulator
    assert torch.equal(results[0], results[1])
    flat = x.reshape(-1, 24)
    expected = flat.pow(2).mean(0) if kind == "sq" else 2 * flat.t() @ flat / flat.shape[0]
    torch.testing.assert_close(results[0], expected)


@pytest.mark.parametrize("kind", ["sq", "hessian"])
def test_layer_statistics_identical_in_batches_of_1_or_8(arch, kind):
    model = tiny_lm(arch)
    layers = decoder_layers(model)
    calibration = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(3))
    per_batch = {}
    for batch_size in (1, 8):
        inputs = capture_layer_inputs(model, layers, calibration, CPU, batch_size)
        linears = layer_linears(layers[0])
        stats = collect_stats(layers[0], linears, inputs.hidden, inputs.calls[0], kind)
        read = stats.sq_mean if kind == "sq" else stats.hessian
        per_batch[batch_size] = {name: read(name) for name in linears}
    # Equal bit for bit on this machine; a tolerance only because BLAS may block a GEMM of 8 sequences differently.
    for name in per_batch[1]:
        torch.testing.assert_close(per_batch[1][name], per_batch[8][name], rtol=1e-6, atol=1e-7, msg=name)


def test_wanda_in_batches_of_1_or_8_prunes_the_same_weights(arch, calibration):
    one, eight = tiny_lm(arch), tiny_lm(arch)
    compress_model(one, parse_spec("wanda:0.5"), calibration, batch_size=1)
    compress_model(eight, parse_spec("wanda:0.5"), calibration, batch_size=8)
    for a, b in zip(one.parameters(), eight.parameters()):
        assert torch.equal(a == 0, b == 0)


def test_next_layer_statistics_come_from_the_pruned_layer(arch, calibration):
    model = tiny_lm(arch)
    pruned = clone(model)
    layers = decoder_layers(model)
    inputs = capture_layer_inputs(model, layers, calibration, CPU, 1)
    linears1 = layer_linears(layers[1])
    dense_h1 = run_layer(layers[0], inputs.hidden, inputs.calls[0])
    dense_stats = collect_stats(layers[1], linears1, dense_h1, inputs.calls[1], "sq")

    compress_model(pruned, parse_spec("wanda:0.5"), calibration)
    pruned_layers = decoder_layers(pruned)
    # Layer 0 of `pruned` is pruned; run the dense layer 1 on its outputs: those are the stats Wanda used.
    pruned_h1 = run_layer(pruned_layers[0], inputs.hidden, inputs.calls[0])
    after_stats = collect_stats(layers[1], linears1, pruned_h1, inputs.calls[1], "sq")

    for name, linear in linears1.items():
        assert not torch.allclose(dense_stats.sq_mean(name), after_stats.sq_mean(name)), name
        used = wanda_mask(linear.weight, after_stats.sq_mean(name), 0.5, None, None)
        pruned_weight = dict(pruned_layers[1].named_modules())[name].weight
        assert torch.equal(pruned_weight == 0, used), name
    # ... and at least one mask differs from what dense-input statistics would have chosen.
    assert any(
        not torch.equal(
            wanda_mask(linear.weight, dense_stats.sq_mean(name), 0.5, None, None),
            dict(pruned_layers[1].named_modules())[name].weight == 0,
        )
        for name, linear in linears1.items()
    )
