"""rtn-int4 (torch only) and bitsandbytes int8 / NF4 on the CPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from illusion_checks.compress import compress_model, parse_spec, save_compressed
from illusion_checks.compress.quant import rtn_quantize
from tests.helpers.need import need_module
from tests.helpers.reference_pruning import find_linears
from tests.helpers.tiny import tiny_calibration, tiny_lm


def test_rtn_error_is_within_half_a_step_of_each_128_column_group():
    torch.manual_seed(0)
    W = torch.randn(32, 320)  # two full groups of 128 and a last one of 64
    deq = rtn_quantize(W)
    for start in range(0, 320, 128):
        group, out = W[:, start : start + 128], deq[:, start : start + 128]
        low = group.min(dim=1, keepdim=True).values.clamp(max=0)
        high = group.max(dim=1, keepdim=True).values.clamp(min=0)
        step = (high - low) / 15
        assert ((group - out).abs() <= step / 2 + 1e-6).all()
        assert all(len(row.unique()) <= 16 for row in out)  # 4 bits per group of one row
    assert float((deq - W).norm() / W.norm()) < 0.1


def test_rtn_groups_run_along_the_input_dimension():
    torch.manual_seed(0)
    W = torch.randn(8, 384)
    W[:, 128:256] *= 1e-3  # one tiny-valued group of input columns per row
    W[4:] *= 1e3  # rows of a very different scale: groups must not span rows
    deq = rtn_quantize(W)
    # Each 128-column group of each row has its own scale, so even the tiny group keeps ~10% accuracy
    # (a group mixing it with normal columns would round it all to zero: error 1.0).
    for rows in (slice(0, 4), slice(4, 8)):
        for start in range(0, 384, 128):
            group = W[rows, start : start + 128]
            error = (deq[rows, start : start + 128] - group).norm() / group.norm()
            assert float(error) < 0.15
    # A group spanning 256 columns would need more than 16 levels per row.
    assert len(deq[0, :256].unique()) > 16


def test_rtn_keeps_zeros_zero():
    W = torch.randn(4, 128)
    W[:, ::2] = 0  # e.g. after pruning
    assert (rtn_quantize(W)[:, ::2] == 0).all()


def test_rtn_int4_end_to_end_on_the_cpu(arch):
    model = tiny_lm(arch)
    calibration = tiny_calibration(2, 16)
    with torch.no_grad():
        dense = model(calibration).logits
    embed = model.model.embed_tokens.weight.clone()
    weights = {name: linear.weight.clone() for name, linear in find_linears(model.model.layers).items()}
    report = compress_model(model, parse_spec("rtn-int4"))
    assert report.model is model and report.calibration_shape is None
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model.model.embed_tokens.weight, embed)
    for name, linear in find_linears(model.model.layers).items():
        assert not torch.equal(linear.weight, weights[name]), name
        torch.testing.assert_close(linear.weight, rtn_quantize(weights[name]))
    with torch.no_grad():
        quantized = model(calibration).logits
    # Random tiny models amplify the ~10% per-matrix error; this only checks the model still computes sanely.
    assert float((quantized - dense).norm() / dense.norm()) < 0.5


@pytest.mark.parametrize("spec, tolerance", [("bnb-int8", 0.03), ("bnb-nf4", 0.2)])
def test_bitsandbytes_runs_on_this_cpu_and_saves(spec, tolerance, tmp_path):
    need_module("bitsandbytes")
    from transformers import AutoModelForCausalLM

    model = tiny_lm("llama")
    calibration = tiny_calibration(2, 16)
    with torch.no_grad():
        dense = model(calibration).logits
    report = compress_model(model, parse_spec(spec))
    quantized = report.model
    assert quantized is not model  # reloaded through BitsAndBytesConfig
    kind = "Linear8bitLt" if spec == "bnb-int8" else "Linear4bit"
    assert type(quantized.model.layers[0].mlp.down_proj).__name__ == kind
    assert type(quantized.lm_head).__name__ == "Linear"
    assert quantized.lm_head.weight is quantized.model.embed_tokens.weight
    # Save before the first forward: on AVX512-BF16 CPUs, bnb's NF4 repacks weights on first use and
    # unpacking them for saving rounds the scales slightly.
    saved = save_compressed(quantized, None, tmp_path / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MatMul8bitLt: "inputs will be cast from torch.float32 to float16"
        with torch.no_grad():
            out = quantized(calibration).logits
        reloaded = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
        with torch.no_grad():
            again = reloaded(calibration).logits
    assert float((out - dense).norm() / dense.norm()) < tolerance
    assert type(reloaded.model.layers[0].mlp.down_proj).__name__ == kind
    torch.testing.assert_close(again, out)
