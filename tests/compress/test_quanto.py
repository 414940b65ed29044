"""quanto-int8 / quanto-int4 (optimum-quanto through transformers' QuantoConfig) on the CPU: the real
SmolLM2-135M quantized weights-only, and the one-line errors for what quanto models cannot do (be saved)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from illusion_checks import EvaluationSpec, evaluate
from illusion_checks.compress import compress_model, parse_spec, save_compressed
from illusion_checks.compress.prune import layer_linears
from tests.helpers.need import need_module

SPECS = ("quanto-int8", "quanto-int4")
PROMPT = "The capital of France is"

SAVE_ERROR = "--illusion-save-compressed: quanto-int4 models cannot be saved (transformers cannot save_pretrained"
VLLM_ERROR = "--illusion-backend=vllm: quanto-int8 models cannot be saved for vLLM to load"


@pytest.mark.parametrize("values, message", [
    ({"compress": "quanto-int4", "save_compressed": "out"}, SAVE_ERROR),
    ({"compress": "quanto-int8", "backend": "vllm"}, VLLM_ERROR),
    ({"compress": "wanda:0.5,quanto-int8", "backend": "vllm"}, VLLM_ERROR),  # one quanto spec in a sweep is enough
])
def test_unsaveable_specs_are_one_line_errors_before_any_model_loads(values, message, monkeypatch):
    from illusion_checks import lifecycle

    monkeypatch.setattr(lifecycle.Models, "load", lambda *args: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError) as caught:
        evaluate(EvaluationSpec(model="smollm2-135m", langs=("en",), items=2, no_cache=True, **values))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_quanto_on_the_hf_backend_without_saving_passes_the_check():
    EvaluationSpec(model="smollm2-135m", compress="quanto-int8,quanto-int4").check()
    EvaluationSpec(model="smollm2-135m", compress="bnb-nf4", backend="vllm", save_compressed="out").check()


def test_save_compressed_with_quanto_is_a_usage_error_on_the_command_line(pytester: pytest.Pytester):
    result = pytester.runpytest("--illusion-model=m", "--illusion-compress=quanto-int4",
                                "--illusion-save-compressed=out")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line.startswith("ERROR:")] == [
        f"ERROR: {SAVE_ERROR} a quanto-quantized model)"
    ]


# -- the real SmolLM2-135M (fp32, CPU) -----------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2(embedded_model):
    return embedded_model("smollm2-135m")


@pytest.fixture(scope="module")
def prompt_ids(smollm2) -> torch.Tensor:
    return smollm2.tokenizer(PROMPT, return_tensors="pt").input_ids


@pytest.fixture(scope="module")
def dense_logits(smollm2, prompt_ids) -> torch.Tensor:
    with torch.no_grad():
        return smollm2.model(prompt_ids).logits


@pytest.fixture(scope="module")
def quantized(smollm2) -> tuple[nn.Module, dict[str, nn.Module]]:
    """(the dense copy both specs were compressed from, {spec: quantized model})."""
    need_module("optimum.quanto")
    source = copy.deepcopy(smollm2.model)
    return source, {spec: compress_model(source, parse_spec(spec)).model for spec in SPECS}


@pytest.mark.slow
@pytest.mark.parametrize("spec, qtype", [("quanto-int8", "qint8"), ("quanto-int4", "qint4")])
def test_decoder_linears_become_quanto_modules_and_lm_head_stays_dense(quantized, spec, qtype):
    from optimum.quanto import QLinear

    source, models = quantized
    model = models[spec]
    assert model is not source
    for layer in model.model.layers:
        linears = layer_linears(layer)
        assert len(linears) == 7  # q, k, v, o, gate, up, down
        for name, linear in linears.items():
            assert isinstance(linear, QLinear), name
            assert linear.weight_qtype.name == qtype and linear.activation_qtype is None, name  # weights only
            assert linear.qweight.dtype == torch.float32  # dequantized in the model's dtype
    assert type(model.lm_head) is nn.Linear and type(model.model.embed_tokens) is nn.Embedding
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied, still dense
    assert torch.equal(model.lm_head.weight, source.lm_head.weight)


@pytest.mark.slow
def test_logits_move_a_bounded_amount_int4_more_than_int8(smollm2, quantized, prompt_ids, dense_logits):
    source, models = quantized
    dense = smollm2.model.state_dict()
    assert all(torch.equal(weight, dense[name]) for name, weight in source.state_dict().items())  # left untouched
    with torch.no_grad():
        delta = {spec: float((models[spec](prompt_ids).logits - dense_logits).norm() / dense_logits.norm())
                 for spec in SPECS}
    print("\nSmolLM2-135M relative logit change:", {spec: round(d, 4) for spec, d in delta.items()})
    # Measured on this prompt: int8 0.038 (per-channel, 255 levels), int4 0.40 (groups of 96-128, 16 levels).
    assert 0.005 < delta["quanto-int8"] < 0.1
    assert 3 * delta["quanto-int8"] < delta["quanto-int4"] < 0.8


@pytest.mark.slow
def test_greedy_generation_still_runs_and_answers(smollm2, quantized, prompt_ids):
    _, models = quantized
    start = prompt_ids.shape[1]
    for spec in SPECS:
        out = models[spec].generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=3,
                                    do_sample=False, pad_token_id=smollm2.tokenizer.pad_token_id)
        assert out.shape == (1, start + 3) and torch.equal(out[:, :start], prompt_ids)
        assert smollm2.tokenizer.decode(out[0, start:]).startswith(" Paris"), spec


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_transformers_still_refuses_to_save_a_quanto_model(quantized, spec, tmp_path):
    """The reason for the errors above: should a transformers release lift it, this fails (lift them too)."""
    _, models = quantized
    with pytest.raises(ValueError, match="quantized with quanto and is not serializable"):
        save_compressed(models[spec], None, tmp_path / "model")
    assert not (tmp_path / "model").exists()
