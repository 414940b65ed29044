"""`llmc:` specs without llm-compressor: the forms parse_spec takes and refuses, the recipe each preset
writes (fitted to the model's widths), a recipe file's errors before any model loads, the search's
refusal, and the compressed model's identity (the recipe's digest and llmcompressor's version)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from illusion_checks.backends.vllm.engine import _scheme
from illusion_checks.compress.llmc.recipes import recipe_for
from illusion_checks.compress.spec import CompressionSpec, parse_spec
from illusion_checks.lifecycle import _folder_name, compressed_fingerprint
from illusion_checks.search import parse_search
from illusion_checks.spec import EvaluationSpec

SMOLLM2_WIDTHS = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads*head_dim": 576}


@pytest.mark.parametrize("text, recipe, nm", [
    ("llmc:gptq-w4a16", "gptq-w4a16", None),
    (" LLMC:W8A8-INT8 ", "w8a8-int8", None),
    ("llmc:fp8-dynamic", "fp8-dynamic", None),
    ("llmc:sparsegpt-2:4", "sparsegpt-2:4", (2, 4)),
    ("llmc:wanda:0.5", "wanda:0.5", None),
    ("llmc:SparseGPT:2:4", "sparsegpt:2:4", (2, 4)),
    ("llmc:recipes/My Recipe.yaml", "recipes/My Recipe.yaml", None),  # a path keeps its case
])
def test_llmc_forms(text: str, recipe: str, nm: tuple[int, int] | None) -> None:
    spec = parse_spec(text)
    assert spec.is_llmc and spec.recipe == recipe and not spec.is_pruning
    assert (spec.n, spec.m) == (nm or (None, None))
    assert parse_spec(str(spec)) == spec


def test_only_the_data_free_preset_skips_calibration() -> None:
    assert not parse_spec("llmc:fp8-dynamic").needs_calibration
    assert all(parse_spec(f"llmc:{name}").needs_calibration
               for name in ("gptq-w4a16", "w8a8-int8", "wanda:0.5", "sparsegpt-2:4", "r.yaml"))
    assert parse_spec("llmc:r.yaml").recipe_file == "r.yaml" and parse_spec("llmc:wanda:0.5").recipe_file is None


@pytest.mark.parametrize("text, message", [
    ("llmc:", "llmc needs a preset or a recipe file"),
    ("llmc:gptq-w3a16", "unknown llmc preset 'gptq-w3a16'"),
    ("llmc:wanda:1.5", "invalid compression spec 'llmc:wanda:1.5': sparsity must lie in"),
    ("llmc:magnitude:0.5", "unknown llmc preset"),
])
def test_bad_llmc_forms_name_the_spec(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as caught:
        parse_spec(text)
    assert "\n" not in str(caught.value)


def _modifiers(text: str) -> dict:
    return yaml.safe_load(text)["default_stage"]["default_modifiers"]


def test_w4a16_takes_the_largest_group_size_that_divides_every_width() -> None:
    spec = parse_spec("llmc:gptq-w4a16")
    smollm2 = recipe_for(spec, SMOLLM2_WIDTHS)
    weights = _modifiers(smollm2.text)["GPTQModifier"]["config_groups"]["group_0"]["weights"]
    assert weights == {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 64}
    assert "576" in smollm2.note and "128" in smollm2.note
    wide = recipe_for(spec, {"hidden_size": 4096, "intermediate_size": 14336})
    assert "group_size: 128" in wide.text and wide.note is None and wide.sha256 != smollm2.sha256
    with pytest.raises(ValueError, match="no W4A16 group size .* divides .*hidden_size 100"):
        recipe_for(spec, {"hidden_size": 100})


def test_pruning_presets_keep_lm_head_dense_and_say_their_mask() -> None:
    wanda = _modifiers(recipe_for(parse_spec("llmc:wanda:0.5"), SMOLLM2_WIDTHS).text)
    assert wanda == {"WandaPruningModifier": {"sparsity": 0.5, "mask_structure": "0:0", "targets": ["Linear"],
                                              "ignore": ["re:.*lm_head"]}}
    nm = _modifiers(recipe_for(parse_spec("llmc:sparsegpt-2:4"), SMOLLM2_WIDTHS).text)["SparseGPTModifier"]
    assert nm["sparsity"] == 0.5 and nm["mask_structure"] == "2:4"
    w8a8 = _modifiers(recipe_for(parse_spec("llmc:w8a8-int8"), SMOLLM2_WIDTHS).text)
    assert list(w8a8) == ["SmoothQuantModifier", "GPTQModifier"] and w8a8["GPTQModifier"]["scheme"] == "W8A8"


def test_a_recipe_file_runs_as_written(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("stage:\n  mods:\n    QuantizationModifier: {targets: [Linear], scheme: W8A16}\n")
    recipe = recipe_for(parse_spec(f"llmc:{path}"), SMOLLM2_WIDTHS)
    assert recipe.text == path.read_text() and recipe.origin == str(path)


@pytest.mark.parametrize("content, message", [
    (None, "cannot be read"),
    ("stage:\n  mods:\n    GPTQModifier: {scheme: W4A16\n", "is not valid YAML at line 4"),
    ("- GPTQModifier\n", "is not a llm-compressor recipe .* but a list"),
])
def test_a_bad_recipe_file_is_a_usage_error_before_any_model_loads(tmp_path: Path, content: str | None,
                                                                    message: str) -> None:
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    spec = EvaluationSpec(model="smollm2-135m", compress=f"llmc:{path}", langs=("en",), items=2)
    with pytest.raises(ValueError, match=f"--illusion-compress=llmc:{path}: recipe file {path} {message}") as caught:
        spec.check()
    assert "\n" not in str(caught.value)


def test_the_search_grid_refuses_llmc() -> None:
    with pytest.raises(ValueError, match="the search grid runs the tool's own methods .* as a sweep"):
        parse_search("llmc:wanda:0.3..0.7", 0.1)


def test_the_fingerprint_follows_the_recipe_and_the_version() -> None:
    cfg = EvaluationSpec(model="smollm2-135m", compress="llmc:wanda:0.5")
    base = {"recipe_sha256": "a" * 64, "llmcompressor": "0.14.0.1"}
    first = compressed_fingerprint(cfg, "llmc:wanda:0.5", None, "sha256:ref", base)
    assert first == compressed_fingerprint(cfg, "llmc:wanda:0.5", None, "sha256:ref", dict(base))
    assert first != compressed_fingerprint(cfg, "llmc:wanda:0.5", None, "sha256:ref", {**base, "recipe_sha256": "b" * 64})
    assert first != compressed_fingerprint(cfg, "llmc:wanda:0.5", None, "sha256:ref", {**base, "llmcompressor": "0.15"})
    name = _folder_name("/cache/SmolLM2", "llmc:/home/me/My recipes/w4 a16.yaml", first)
    assert name.startswith("SmolLM2-llmc_w4_a16-") and "/" not in name
    assert _folder_name("/cache/SmolLM2", "wanda:0.5", first).startswith("SmolLM2-wanda_0.5-")


def test_the_scheme_vllm_refused_is_named_from_the_checkpoint(tmp_path: Path) -> None:
    config = {"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"type": "float", "num_bits": 8, "strategy": "channel"},
        "input_activations": {"type": "float", "num_bits": 8, "dynamic": True}}}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert _scheme(tmp_path) == "weights float8 channel, activations float8"
    assert CompressionSpec("llmc", recipe="fp8-dynamic") == parse_spec("llmc:fp8-dynamic")
