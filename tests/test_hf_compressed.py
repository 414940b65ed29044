"""A compressed-tensors checkpoint's dynamic activation quantization survives its dequantized CPU load:
the hooked Linears see each token's inputs on the int8 (or fp8) grid, scaled by the token's own
absolute maximum, the ignored ones (lm_head) see them as they are, and a scheme that cannot be
simulated exactly (static scales, asymmetric) is refused rather than dropped."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from illusion_checks.backends.hf.compressed import simulate_input_quantization

W8A8 = {"quant_method": "compressed-tensors", "ignore": ["lm_head", "re:.*gate$"], "config_groups": {"group_0": {
    "targets": ["Linear"], "weights": {"num_bits": 8, "type": "int", "strategy": "channel"},
    "input_activations": {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": True, "symmetric": True}}}}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj, self.gate, self.lm_head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)


def _identity_input(module: nn.Linear) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    module.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach().clone()))
    return seen


def test_int8_per_token_inputs_reach_the_targeted_linears_only() -> None:
    model = Tiny()
    assert simulate_input_quantization(model, W8A8, "ckpt") == 1  # proj: gate and lm_head are ignored
    seen = {name: _identity_input(getattr(model, name)) for name in ("proj", "gate", "lm_head")}
    x = torch.tensor([[0.5, -1.0, 0.013, 0.2, 0.0, 0.7, -0.3, 0.31], [100.0, 1.0, -2.0, 3.0, 0.0, 0.0, 0.0, 0.0]])
    for name in seen:
        getattr(model, name)(x)
    quantized = seen["proj"][0]
    for row, original in zip(quantized, x):
        scale = original.abs().max() / 127
        steps = row / scale
        assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= 127.0001
        assert torch.allclose(row, original, atol=float(scale) / 2 + 1e-6)
    assert not torch.equal(quantized, x) and quantized[1, 1] == pytest.approx(100 / 127)  # 1.0 -> 1 step
    assert torch.equal(seen["gate"][0], x) and torch.equal(seen["lm_head"][0], x)


def test_fp8_dynamic_inputs_are_on_the_e4m3_grid() -> None:
    fp8 = {"config_groups": {"g": {"targets": ["Linear"], "input_activations": {
        "num_bits": 8, "type": "float", "strategy": "token", "dynamic": True, "symmetric": True}}}}
    model = Tiny()
    assert simulate_input_quantization(model, fp8, "ckpt") == 3
    seen = _identity_input(model.proj)
    x = torch.randn(3, 8)
    model.proj(x)
    scale = x.abs().amax(dim=-1, keepdim=True) / 448
    on_grid = (x / scale).to(torch.float8_e4m3fn).to(torch.float32) * scale
    assert torch.allclose(seen[0], on_grid) and not torch.equal(seen[0], x)


@pytest.mark.parametrize("change", [{"dynamic": False}, {"symmetric": False}, {"strategy": "group"}])
def test_a_scheme_that_cannot_be_simulated_is_refused(change: dict) -> None:
    args = {**W8A8["config_groups"]["group_0"]["input_activations"], **change}
    config = {"config_groups": {"g": {"targets": ["Linear"], "input_activations": args}}}
    with pytest.raises(ValueError, match="ckpt: input activations int8 .* cannot be simulated"):
        simulate_input_quantization(Tiny(), config, "ckpt")


def test_weight_only_schemes_hook_nothing() -> None:
    w4a16 = {"config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4}, "input_activations": None}}}
    assert simulate_input_quantization(Tiny(), w4a16, "ckpt") == 0
