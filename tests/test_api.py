"""The Python API, `illusion_checks.evaluate`: a tiny model evaluated in a process without pytest,
gates that follow their thresholds, and bad values stopped, naming the option, before any model loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from illusion_checks import EvaluationSpec, GateSpec, evaluate
from illusion_checks.results import load_results

REPO = Path(__file__).resolve().parents[1]

# Run as its own process: no pytest, no plugin. The compressed model is the reference itself, so
# every reference-both-correct item is kept: dissociation 0, retention 1, delta_pr 0.
SCRIPT = """
import json, sys
from illusion_checks import EvaluationSpec, GateSpec, evaluate

model, out = sys.argv[1], sys.argv[2]
spec = EvaluationSpec(model=model, compressed=model, langs=("en",), items=6, device="cpu", dtype="float32",
                      no_reachability=True, cache_dir=out + "/cache")
first = evaluate(spec, GateSpec(max_dissociation=0.0, min_retention=1.0),
                 json_path=out + "/results.json", report_path=out + "/report.html")
again = evaluate(spec, GateSpec(max_dissociation=0.0, max_delta_pr=-0.5))
print(json.dumps({
    "runs": [{"passed": run.passed, "loaded": run.stats.models_loaded,
              "gates": [gate.to_dict() for gate in run.gates], "stored": run.results["gates"],
              "overall": run.results["summary"]["overall"]} for run in (first, again)],
    "pytest": sorted(m for m in sys.modules if m == "pytest" or m.startswith(("_pytest", "illusion_checks.pytest_plugin"))),
}))
"""


@pytest.fixture(scope="module")
def taught_dir(taught_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("taught")
    taught_model.model.save_pretrained(str(directory))
    taught_model.tokenizer.save_pretrained(str(directory))
    return directory


def test_evaluate_runs_without_pytest_and_its_gates_follow_the_thresholds(taught_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(taught_dir), str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["pytest"] == []
    first, again = report["runs"]
    assert first["overall"]["n_both_correct"] > 0
    assert (first["overall"]["dissociation_rate"], first["overall"]["retention"]) == (0.0, 1.0)
    for run in (first, again):
        assert run["stored"] == run["gates"]
        for gate in run["gates"]:
            bound = gate["compared"] <= gate["threshold"] if gate["direction"] == "max" else gate["compared"] >= gate["threshold"]
            assert gate["passed"] == bound, gate
        assert run["passed"] == all(gate["passed"] for gate in run["gates"])
    assert {(g["name"], g["lang"]) for g in first["gates"]} == {(m, lang) for m in ("dissociation", "retention")
                                                                 for lang in ("en", "overall")}
    assert first["passed"] and not again["passed"]
    assert [g["name"] for g in again["gates"] if not g["passed"]] == ["delta_pr", "delta_pr"]
    # The second run found both models' outcomes in the cache; only the first wrote files.
    assert (first["loaded"], again["loaded"]) == (2, 0)
    written = load_results(tmp_path / "results.json")
    assert written["gates"] == first["gates"]
    assert (tmp_path / "report.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


BAD = {
    "items": (lambda: EvaluationSpec(model="m", compress="magnitude:0.5", items=0), ("--illusion-items", "at least 1")),
    "device": (lambda: EvaluationSpec(model="m", compress="magnitude:0.5", device="tpu"), ("--illusion-device", "'tpu'")),
    "backend": (lambda: EvaluationSpec(model="m", compress="magnitude:0.5", backend="tgi"),
                ("--illusion-backend", "'tgi'", "hf, vllm")),
    "tensor_parallel_size": (lambda: EvaluationSpec(backend="vllm", tensor_parallel_size=0),
                             ("--illusion-tensor-parallel-size", "at least 1")),
    "pipeline_parallel_size": (lambda: EvaluationSpec(backend="vllm", pipeline_parallel_size=1.5),
                               ("--illusion-pipeline-parallel-size", "1.5", "not an integer")),
    "backend_args type": (lambda: EvaluationSpec(backend="vllm", backend_args=["max_model_len", 4096]),
                          ("--illusion-backend-args", "not a JSON object (a JSON array)")),
    "backend_args value": (lambda: EvaluationSpec(backend="vllm", backend_args={"x": {1, 2}}),
                           ("--illusion-backend-args", "not a JSON object", "not JSON serializable")),
    "backend_args own key": (lambda: EvaluationSpec(backend="vllm", backend_args={"model": "other"}),
                             ("--illusion-backend-args", "'model'", "--illusion-model")),
    "parallel on hf": (lambda: evaluate(EvaluationSpec(model="m", compress="magnitude:0.5", tensor_parallel_size=2)),
                       ("--illusion-tensor-parallel-size", "needs --illusion-backend=vllm")),
    "backend_args on hf": (lambda: evaluate(EvaluationSpec(model="m", compress="magnitude:0.5",
                                                           backend_args={"max_model_len": 4096})),
                           ("--illusion-backend-args", "needs --illusion-backend=vllm")),
    "ablations": (lambda: EvaluationSpec(model="m", compress="magnitude:0.5", ablations=("foo",)),
                  ("--illusion-ablations", "foo")),
    "no model": (lambda: evaluate(EvaluationSpec(compress="magnitude:0.5")), ("--illusion-model",)),
    "no compression": (lambda: evaluate(EvaluationSpec(model="m")), ("--illusion-compress=SPEC",)),
    "both": (lambda: evaluate(EvaluationSpec(model="m", compress="magnitude:0.5", compressed="c")),
             ("--illusion-compress", "--illusion-compressed", "exclude each other")),
    "spec": (lambda: evaluate(EvaluationSpec(model="m", compress="wanda:1.5")), ("--illusion-compress", "'wanda:1.5'")),
    "calibration": (lambda: evaluate(EvaluationSpec(model="m", compress="wanda:0.5", calibration="nowhere.txt")),
                    ("--illusion-calibration", "'nowhere.txt'")),
    "gate_on": (lambda: GateSpec(gate_on="maybe"), ("--illusion-gate-on", "'maybe'")),
    "alpha": (lambda: GateSpec(alpha=2), ("--illusion-alpha", "2")),
    "mcnemar with a threshold": (lambda: GateSpec(gate_on="mcnemar", max_delta_pr=0.1),
                                 ("--illusion-gate-on=mcnemar", "--illusion-max-delta-pr")),
    "threshold": (lambda: GateSpec(max_dissociation=1.5), ("--illusion-max-dissociation", "[0, 1]")),
    "same file": (lambda: evaluate(EvaluationSpec(model="m", compress="magnitude:0.5"), json_path="out/x",
                                   report_path="out/x"), ("--illusion-report", "--illusion-json", "same file")),
}


@pytest.mark.parametrize("make, names", BAD.values(), ids=BAD.keys())
def test_bad_values_raise_a_value_error_naming_the_option_before_any_model_loads(
        make, names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import illusion_checks.api as api

    def no_evaluation(*args, **kwargs):
        raise AssertionError("an evaluation started")

    monkeypatch.setattr(api, "Evaluation", no_evaluation)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as caught:
        make()
    message = str(caught.value)
    assert "\n" not in message
    for name in names:
        assert name in message, (name, message)


def test_vllm_options_default_to_one_device_and_take_python_values() -> None:
    spec = EvaluationSpec()
    assert (spec.tensor_parallel_size, spec.pipeline_parallel_size, spec.backend_args.to_dict()) == (1, 1, {})
    given = {"max_model_len": 4096, "compilation_config": {"level": 0}}
    vllm = EvaluationSpec(model="m", compress="magnitude:0.5", backend="vllm", tensor_parallel_size=8,
                          pipeline_parallel_size="2", backend_args=given)
    vllm.check()
    assert (vllm.tensor_parallel_size, vllm.pipeline_parallel_size) == (8, 2)
    plain = vllm.backend_args.to_dict()
    assert plain == given and type(plain) is dict and dict(vllm.backend_args) == given
    # Frozen: the caller's dict and the copies handed out do not reach the spec; it stays hashable.
    given["max_model_len"] = 1
    plain["compilation_config"]["level"] = 3
    vllm.backend_args["compilation_config"]["level"] = 3
    assert vllm.backend_args.to_dict() == {"max_model_len": 4096, "compilation_config": {"level": 0}}
    with pytest.raises(TypeError):
        vllm.backend_args["max_model_len"] = 1  # type: ignore[index]
    text = EvaluationSpec(model="m", compress="magnitude:0.5", backend="vllm", tensor_parallel_size=8,
                          pipeline_parallel_size=2, backend_args='{"compilation_config": {"level": 0}, "max_model_len": 4096}')
    assert text == vllm and hash(text) == hash(vllm) and len({text, vllm, spec}) == 2
