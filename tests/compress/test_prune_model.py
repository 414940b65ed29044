"""compress_model on whole tiny models: exact budgets, untouched parts, tied embeddings, no-ops, progress."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.compress import compress_model, parse_spec
from tests.helpers.reference_pruning import find_linears
from tests.helpers.tiny import clone, tiny_lm

PRUNING = ["magnitude:0.5", "wanda:0.5", "sparsegpt:0.5", "magnitude:2:4", "wanda:2:4", "sparsegpt:2:4"]


def non_decoder_linear_params(model) -> dict[str, torch.Tensor]:
    """Everything compress must not touch: embeddings, norms, lm_head, the layers' norms and Linear biases."""
    pruned = {
        f"model.layers.{i}.{name}.weight"
        for i, layer in enumerate(model.model.layers)
        for name in find_linears(layer)
    }
    return {name: p.detach().clone() for name, p in model.named_parameters(remove_duplicate=False) if name not in pruned}


@pytest.mark.parametrize("spec", PRUNING)
def test_only_decoder_linears_change_and_tied_embeddings_stay_tied(arch, calibration, spec):
    model = tiny_lm(arch)
    before = non_decoder_linear_params(model)
    assert "lm_head.weight" in before and any("norm" in name for name in before)
    compress_model(model, parse_spec(spec), calibration)
    after = non_decoder_linear_params(model)
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    if arch == "qwen2":
        assert any(name.endswith("q_proj.bias") for name in before)  # biases are checked untouched too


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.7, 0.9])
def test_wanda_prunes_exactly_floor_columns_times_s_in_every_row(arch, calibration, sparsity):
    model = tiny_lm(arch)
    report = compress_model(model, parse_spec(f"wanda:{sparsity}"), calibration)
    for layer in model.model.layers:
        for name, linear in find_linears(layer).items():
            zeros = (linear.weight == 0).sum(dim=1)
            assert (zeros == int(linear.in_features * sparsity)).all(), name
    assert all(abs(s - sparsity) < 0.02 for s in report.layer_sparsity)


@pytest.mark.parametrize("spec", ["wanda:2:4", "sparsegpt:2:4", "magnitude:2:4", "wanda:1:8"])
def test_n_m_prunes_exactly_n_in_every_aligned_group(arch, calibration, spec):
    parsed = parse_spec(spec)
    model = tiny_lm(arch)
    compress_model(model, parsed, calibration)
    for layer in model.model.layers:
        for name, linear in find_linears(layer).items():
            groups = (linear.weight == 0).reshape(linear.out_features, -1, parsed.m).sum(dim=-1)
            assert (groups == parsed.n).all(), name


@pytest.mark.parametrize("spec", ["wanda:0", "sparsegpt:0", "magnitude:0", "wanda:0.0"])
def test_sparsity_zero_is_a_no_op(arch, calibration, spec):
    model = tiny_lm(arch)
    before = {name: p.clone() for name, p in model.named_parameters()}
    report = compress_model(model, parse_spec(spec), calibration)
    assert report.model is model
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
def test_zero_budget_kernels_change_nothing(arch, calibration, method):
    """Below compress_model's short cut, the layer loop itself also prunes nothing at sparsity 0."""
    from illusion_checks.compress.prune import prune_model
    from illusion_checks.compress.spec import CompressionSpec

    model = tiny_lm(arch)
    before = clone(model)
    prune_model(model, CompressionSpec(method, sparsity=0.0), calibration, torch.device("cpu"))
    for (name, p), q in zip(model.named_parameters(), before.parameters()):
        assert torch.equal(p, q), name


def test_report_and_progress(calibration):
    model = tiny_lm("llama")
    seen = []
    report = compress_model(model, parse_spec("sparsegpt:0.5"), calibration, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)]
    assert report.model is model and report.device == "cpu"
    assert report.calibration_shape == (8, 32) and report.wall_time_s > 0
    assert len(report.layer_sparsity) == 2 and len(report.module_sparsity) == 14
    assert report.damping_retries == {}
    assert model.training is False


def test_calibrated_specs_need_calibration():
    for spec in ("wanda:0.5", "sparsegpt:2:4"):
        with pytest.raises(ValueError, match="needs calibration ids"):
            compress_model(tiny_lm("llama"), parse_spec(spec), calibration=None)
    with pytest.raises(ValueError, match="LongTensor"):
        compress_model(tiny_lm("llama"), parse_spec("wanda:0.5"), torch.rand(4, 16))


def test_training_flag_is_restored(calibration):
    model = tiny_lm("llama").train()
    compress_model(model, parse_spec("wanda:0.5"), calibration)
    assert model.training


@pytest.mark.parametrize("extra_arch", ["qwen3", "mistral"])
def test_other_families_prune(extra_arch, calibration):
    model = tiny_lm(extra_arch)
    report = compress_model(model, parse_spec("wanda:2:4"), calibration)
    assert report.layer_sparsity == (0.5, 0.5)
    with torch.no_grad():
        logits = model(calibration[:1]).logits
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("shape, high", [((7, 50), 3), ((5, 64), 1000), ((1, 300), 5)])
@pytest.mark.parametrize("k", [0, 1, 13, 25])
def test_lowest_k_selection_equals_a_stable_sort_even_with_ties(shape, high, k):
    from illusion_checks.compress.masks import lowest_k_mask

    metric = torch.randint(0, high, shape, generator=torch.Generator().manual_seed(k)).float()  # many ties
    expected = torch.zeros_like(metric, dtype=torch.bool)
    expected.scatter_(1, torch.sort(metric, dim=-1, stable=True).indices[:, :k], True)
    assert torch.equal(lowest_k_mask(metric, k), expected)


@pytest.mark.parametrize("spec", ["wanda:0.5", "sparsegpt:2:4", "magnitude:0.5", "rtn-int4"])
def test_bfloat16_models_keep_their_dtype(calibration, spec):
    model = tiny_lm("llama").to(torch.bfloat16)
    report = compress_model(model, spec, calibration)  # a spec string is parsed too
    assert report.spec == parse_spec(spec)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with torch.no_grad():
        assert torch.isfinite(model(calibration[:1]).logits.float()).all()
