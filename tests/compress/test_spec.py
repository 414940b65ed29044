"""parse_spec: every valid form, and every invalid one raising with the list of valid forms."""

from __future__ import annotations

import pytest

from illusion_checks.compress import VALID_FORMS, CompressionSpec, compress_model, parse_spec
from tests.helpers.tiny import tiny_lm


@pytest.mark.parametrize(
    "text, expected",
    [
        ("magnitude:0.5", CompressionSpec("magnitude", sparsity=0.5)),
        ("wanda:0.5", CompressionSpec("wanda", sparsity=0.5)),
        ("sparsegpt:0.5", CompressionSpec("sparsegpt", sparsity=0.5)),
        ("wanda:0", CompressionSpec("wanda", sparsity=0.0)),
        ("wanda:2:4", CompressionSpec("wanda", n=2, m=4)),
        ("sparsegpt:2:4", CompressionSpec("sparsegpt", n=2, m=4)),
        ("magnitude:2:4", CompressionSpec("magnitude", n=2, m=4)),
        ("bnb-int8", CompressionSpec("bnb-int8")),
        ("bnb-nf4", CompressionSpec("bnb-nf4")),
        ("rtn-int4", CompressionSpec("rtn-int4")),
        ("quanto-int8", CompressionSpec("quanto-int8")),
        (" Quanto-INT4 ", CompressionSpec("quanto-int4")),
        (" Wanda:0.5 ", CompressionSpec("wanda", sparsity=0.5)),
    ],
)
def test_valid_forms(text, expected):
    spec = parse_spec(text)
    assert spec == expected
    assert parse_spec(str(spec)) == spec


def test_flags():
    assert parse_spec("wanda:0.5").needs_calibration and parse_spec("sparsegpt:2:4").needs_calibration
    assert not parse_spec("magnitude:0.5").needs_calibration
    assert not parse_spec("rtn-int4").needs_calibration and not parse_spec("bnb-nf4").needs_calibration
    assert not parse_spec("wanda:0").needs_calibration and parse_spec("wanda:0").is_noop
    assert parse_spec("wanda:2:4").is_structured and not parse_spec("wanda:0.5").is_structured
    assert not parse_spec("quanto-int8").is_saveable and not parse_spec("quanto-int4").is_saveable
    assert not parse_spec("quanto-int4").is_pruning and not parse_spec("quanto-int4").needs_calibration
    assert all(parse_spec(text).is_saveable for text in ("bnb-nf4", "rtn-int4", "wanda:0.5", "sparsegpt:2:4"))
    with pytest.raises(AttributeError):
        parse_spec("wanda:0.5").sparsity = 0.6  # frozen


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "unknown method"),
        ("wanda", "needs a sparsity"),
        ("wanda:", "needs a sparsity"),
        ("prune:0.5", "unknown method 'prune'"),
        ("bnb-int4", "unknown method"),
        ("rtn-int8", "unknown method"),
        ("quanto-int2", "unknown method 'quanto-int2'"),
        ("quanto:0.5", "unknown method 'quanto'"),
        ("wanda:1", "must lie in [0, 1), but is 1"),
        ("wanda:1.5", "must lie in [0, 1), but is 1.5"),
        ("sparsegpt:-0.1", "must lie in [0, 1), but is -0.1"),
        ("wanda:nan", "must lie in [0, 1)"),
        ("wanda:half", "sparsity must be a number, but is 'half'"),
        ("wanda:4:2", "1 <= N < M, but N is 4 and M is 2"),
        ("wanda:2:2", "1 <= N < M, but N is 2 and M is 2"),
        ("magnitude:0:4", "1 <= N < M, but N is 0 and M is 4"),
        ("wanda:2.5:4", "N must be an integer, but is '2.5'"),
        ("wanda:2:x", "M must be an integer, but is 'x'"),
        ("wanda:2:4:8", "too many ':' fields"),
    ],
)
def test_invalid_forms_list_the_valid_ones(text, why):
    with pytest.raises(ValueError) as caught:
        parse_spec(text)
    message = str(caught.value)
    assert why in message
    assert repr(text) in message and VALID_FORMS in message


def test_non_string_is_rejected():
    with pytest.raises(ValueError, match="must be a string"):
        parse_spec(0.5)


def test_m_must_divide_the_input_width():
    model = tiny_lm("llama")  # every Linear has 64 or 128 inputs
    before = model.model.layers[0].mlp.down_proj.weight.clone()
    with pytest.raises(ValueError, match=r"M to divide the input width, but layers\.0\.self_attn\.q_proj has in_features=64 and M is 3"):
        compress_model(model, parse_spec("magnitude:1:3"))
    assert torch_equal(model.model.layers[0].mlp.down_proj.weight, before)  # checked before any pruning


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_parsing_a_spec_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from illusion_checks.compress.spec import parse_spec; parse_spec('wanda:0.5'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
