"""The layer catcher: every kwarg handed through, per layer, and the model left as it was."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.compress.catcher import call_layer, capture_layer_inputs, decoder_layers
from tests.helpers.reference_pruning import capture_with_prehooks
from tests.helpers.tiny import tiny_calibration, tiny_lm

CPU = torch.device("cpu")


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral", "gemma3"])
def test_replaying_captured_calls_reproduces_the_dense_forward(family):
    model = tiny_lm(family)
    calibration = tiny_calibration(4, 32)
    layers = decoder_layers(model)
    inputs = capture_layer_inputs(model, layers, calibration, CPU, batch_size=2)
    assert all(type(layer).__name__.endswith("DecoderLayer") for layer in layers)  # restored
    hidden = inputs.hidden
    for layer, calls in zip(layers, inputs.calls):
        hidden = [call_layer(layer, h, call) for h, call in zip(hidden, calls)]
    with torch.no_grad():
        expected = model.model(calibration, use_cache=False).last_hidden_state
    torch.testing.assert_close(model.model.norm(torch.cat(hidden)), expected)


def test_gemma3_layers_get_their_own_masks_and_rotary_tables():
    model = tiny_lm("gemma3")
    calibration = tiny_calibration(2, 32)  # longer than the sliding window of 8
    inputs = capture_layer_inputs(model, decoder_layers(model), calibration, CPU, batch_size=2)
    sliding, full = inputs.calls[0][0].kwargs, inputs.calls[1][0].kwargs
    assert model.config.layer_types == ["sliding_attention", "full_attention"]
    assert sliding["attention_mask"] is not None and sliding["attention_mask"] is not full["attention_mask"]
    assert not torch.equal(sliding["position_embeddings"][0], full["position_embeddings"][0])
    # Same as what the model's own loop passes each layer (seen through forward pre-hooks).
    _, reference = capture_with_prehooks(model, calibration[:1])
    for i in range(2):
        ours, theirs = capture_layer_inputs(model, decoder_layers(model), calibration[:1], CPU, 1).calls[i][0].kwargs, reference[i][0]
        assert ours.keys() == theirs.keys()
        for key in ours:
            a, b = ours[key], theirs[key]
            if isinstance(a, tuple):
                assert all(torch.equal(x, y) for x, y in zip(a, b)), key
            elif isinstance(a, torch.Tensor):
                assert torch.equal(a, b), key
            else:
                assert a == b, key


def test_layers_are_restored_when_the_forward_fails():
    model = tiny_lm("llama")
    layers = decoder_layers(model)
    originals = list(layers)
    with pytest.raises(IndexError):
        capture_layer_inputs(model, layers, torch.full((1, 8), 10_000), CPU, 1)  # ids beyond the vocabulary
    assert list(layers) == originals


def test_bad_batch_size_and_unknown_architecture():
    model = tiny_lm("llama")
    with pytest.raises(ValueError, match="batch_size must be at least 1, but is 0"):
        capture_layer_inputs(model, decoder_layers(model), tiny_calibration(), CPU, 0)
    with pytest.raises(ValueError, match="cannot find the decoder layers of Linear"):
        decoder_layers(torch.nn.Linear(2, 2))
