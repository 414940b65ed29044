"""On the real SmolLM2-135M: perplexity ranks dense < SparseGPT ~ Wanda < magnitude, and 2:4 < 50% unstructured.

Calibration is small (16 x 256 tokens, from the fixture passages of the first 46 items per
language); perplexity is measured on the passages of the last 10 items per language, which
calibration never sees.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math

import pytest
import torch

from illusion_checks.compress import calibration_batch, calibration_texts, compress_model, parse_spec
from illusion_checks.datasets import fixture_root
from tests.helpers.need import need_module

pytestmark = pytest.mark.slow

FIXTURES = fixture_root()
LANGS = ["en", "de", "es"]
SPECS = ["magnitude:0.5", "wanda:0.5", "sparsegpt:0.5", "wanda:2:4", "rtn-int4", "bnb-nf4", "bnb-int8"]


def fixture_contexts(lang: str) -> list[str]:
    path = FIXTURES / f"{lang}.jsonl"
    return [json.loads(line)["context"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@torch.no_grad()
def perplexity(model, tokenizer, passages: list[str]) -> float:
    """Token-weighted perplexity over the passages, one passage per forward."""
    nll, count = 0.0, 0
    for text in passages:
        ids = tokenizer(text, return_tensors="pt").input_ids
        loss = model(ids, labels=ids).loss
        nll += float(loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    return math.exp(nll / count)


@pytest.fixture(scope="module")
def smollm2(embedded_model):
    return embedded_model("smollm2-135m")


@pytest.fixture(scope="module")
def perplexities(smollm2) -> dict[str, float]:
    contexts = {lang: fixture_contexts(lang) for lang in LANGS}
    held_out = [c for lang in LANGS for c in contexts[lang][56:]]
    pool = {lang: contexts[lang][:46] for lang in LANGS}
    texts = calibration_texts("balanced", pool, set(held_out), LANGS, seed=0)["*"]
    calibration = calibration_batch(smollm2.tokenizer, texts, nsamples=16, seqlen=256, seed=0)
    assert calibration.shape == (16, 256)
    result = {"dense": perplexity(smollm2.model, smollm2.tokenizer, held_out)}
    for spec in SPECS:
        parsed = parse_spec(spec)
        if parsed.method.startswith("bnb") and importlib.util.find_spec("bitsandbytes") is None:
            continue  # test_quantization_stays_near_dense needs it; the pruning tests do not
        report = compress_model(copy.deepcopy(smollm2.model), parsed, calibration if parsed.needs_calibration else None)
        result[spec] = perplexity(report.model, smollm2.tokenizer, held_out)
        del report
    print("\nSmolLM2-135M perplexities:", {k: round(v, 1) for k, v in result.items()})
    return result


def test_pruning_ranks_dense_then_sparsegpt_and_wanda_then_magnitude(perplexities):
    dense, sparsegpt, wanda, magnitude = (perplexities[k] for k in ("dense", "sparsegpt:0.5", "wanda:0.5", "magnitude:0.5"))
    assert dense < sparsegpt and dense < wanda
    assert max(sparsegpt, wanda) < magnitude / 2  # magnitude pruning wrecks a small model at 50%
    assert 0.5 < sparsegpt / wanda < 2  # the two calibrated methods land close together


def test_2_4_is_worse_than_50_percent_unstructured(perplexities):
    assert perplexities["wanda:2:4"] > perplexities["wanda:0.5"]


def test_quantization_stays_near_dense(perplexities):
    need_module("bitsandbytes")
    dense = perplexities["dense"]
    assert perplexities["bnb-int8"] < 1.1 * dense
    # A 135M model (itself from a Q4_1 GGUF) loses more to 4 bits (~1.6x), but far less than to pruning.
    for spec in ("rtn-int4", "bnb-nf4"):
        assert perplexities[spec] < min(2 * dense, perplexities["sparsegpt:0.5"]), spec


def test_real_model_budget_and_tied_embeddings(smollm2):
    model = copy.deepcopy(smollm2.model)
    embed = model.model.embed_tokens.weight.clone()
    report = compress_model(model, parse_spec("magnitude:2:4"))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model.model.embed_tokens.weight, embed)
    assert len(report.layer_sparsity) == model.config.num_hidden_layers
    # The weights come from a 4-bit GGUF and hold a few exact zeros already: at least 2 per group of 4.
    assert all(0.5 <= s < 0.51 for s in report.layer_sparsity)
    for layer in model.model.layers:
        for linear in (layer.self_attn.q_proj, layer.mlp.down_proj):
            assert ((linear.weight == 0).reshape(linear.out_features, -1, 4).sum(-1) >= 2).all()
