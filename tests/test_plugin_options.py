"""End-to-end: every bad `--illusion-*` value stops pytest with a usage error (exit 4) naming it."""

from __future__ import annotations

import pytest

# Imported here, once: pytester's in-process runs drop the modules they import afterwards, and
# torch (which validating --illusion-compress imports) cannot be imported twice in one process.
import torch  # noqa: F401  isort: skip

ACTIVE = ("--illusion-model=some-model", "--illusion-compress=magnitude:0.5")

# (arguments, what the one-line error must name)
BAD_VALUES = {
    "items=0": ((*ACTIVE, "--illusion-items=0"), ("--illusion-items", "0")),
    "items=abc": ((*ACTIVE, "--illusion-items=abc"), ("--illusion-items", "'abc'")),
    "distractors": ((*ACTIVE, "--illusion-distractors=odd"), ("--illusion-distractors", "'odd'", "standard, hard")),
    "gate-on": ((*ACTIVE, "--illusion-gate-on=maybe"), ("--illusion-gate-on", "'maybe'", "point, ci95")),
    "alpha=1.5": ((*ACTIVE, "--illusion-alpha=1.5"), ("--illusion-alpha", "'1.5'", "between 0 and 1")),
    "alpha=x": ((*ACTIVE, "--illusion-gate-on=mcnemar", "--illusion-alpha=x"), ("--illusion-alpha", "'x'")),
    "mcnemar with a threshold": ((*ACTIVE, "--illusion-gate-on=mcnemar", "--illusion-max-dissociation=0.1"),
                                 ("--illusion-gate-on=mcnemar", "--illusion-max-dissociation", "takes no threshold")),
    "item-policy": ((*ACTIVE, "--illusion-item-policy=sometimes"), ("--illusion-item-policy", "'sometimes'", "xfail, fail, off")),
    "device": ((*ACTIVE, "--illusion-device=tpu"), ("--illusion-device", "'tpu'", "cpu")),
    "device=cuda:x": ((*ACTIVE, "--illusion-device=cuda:x"), ("--illusion-device", "'cuda:x'", "cuda:0")),
    "dtype": ((*ACTIVE, "--illusion-dtype=int3"), ("--illusion-dtype", "'int3'", "bfloat16")),
    "batch-size": ((*ACTIVE, "--illusion-batch-size=0"), ("--illusion-batch-size", "0", "at least 1")),
    "dissociation=sw=abc": ((*ACTIVE, "--illusion-max-dissociation=sw=abc"), ("--illusion-max-dissociation", "'sw=abc'")),
    "dissociation=1.5": ((*ACTIVE, "--illusion-max-dissociation=1.5"), ("--illusion-max-dissociation", "'1.5'", "[0, 1]")),
    "retention=-0.1": ((*ACTIVE, "--illusion-min-retention=-0.1"), ("--illusion-min-retention", "'-0.1'", "[0, 1]")),
    "langs=,": ((*ACTIVE, "--illusion-langs=,"), ("--illusion-langs", "','")),
    "ablations": ((*ACTIVE, "--illusion-ablations=foo"), ("--illusion-ablations", "foo", "distractors_only")),
    "answer-scope": ((*ACTIVE, "--illusion-answer-scope=word"), ("--illusion-answer-scope", "'word'", "line, full")),
    "wanda:1.5": (("--illusion-model=m", "--illusion-compress=wanda:1.5"), ("--illusion-compress", "'wanda:1.5'", "[0, 1)")),
    "wanda:3:2": (("--illusion-model=m", "--illusion-compress=wanda:3:2"), ("--illusion-compress", "'wanda:3:2'", "N < M")),
    "bogus": (("--illusion-model=m", "--illusion-compress=bogus"), ("--illusion-compress", "'bogus'", "Valid forms")),
    "compress+compressed": (("--illusion-model=m", "--illusion-compress=wanda:0.5", "--illusion-compressed=other"),
                            ("--illusion-compress", "--illusion-compressed", "exclude each other")),
    "no compression": (("--illusion-model=m",), ("--illusion-model", "--illusion-compress=SPEC")),
    "missing results": (("--illusion-from-results=nowhere.json",), ("--illusion-from-results", "'nowhere.json'", "does not exist")),
    "calibration": ((*ACTIVE[:1], "--illusion-compress=wanda:0.5", "--illusion-calibration=nonexistent.txt"),
                    ("--illusion-calibration", "'nonexistent.txt'", "english, balanced, per-language")),
    "gate without model": (("--illusion-max-dissociation=0.2",), ("--illusion-max-dissociation", "--illusion-model")),
    "progress-interval": ((*ACTIVE, "--illusion-progress-interval=-5"),
                          ("--illusion-progress-interval", "'-5'", "0 or more")),
    "progress-interval=nan": ((*ACTIVE, "--illusion-progress-interval=nan"), ("--illusion-progress-interval", "'nan'")),
    "backend": ((*ACTIVE, "--illusion-backend=tgi"), ("--illusion-backend", "'tgi'", "hf, vllm")),
    "tensor-parallel=0": ((*ACTIVE, "--illusion-backend=vllm", "--illusion-tensor-parallel-size=0"),
                          ("--illusion-tensor-parallel-size", "0", "at least 1")),
    "pipeline-parallel=two": ((*ACTIVE, "--illusion-backend=vllm", "--illusion-pipeline-parallel-size=two"),
                              ("--illusion-pipeline-parallel-size", "'two'", "not an integer")),
    "backend-args JSON": ((*ACTIVE, "--illusion-backend=vllm", "--illusion-backend-args={max_model_len: 4096}"),
                          ("--illusion-backend-args", "'{max_model_len: 4096}'", "is not a JSON object (")),
    "backend-args array": ((*ACTIVE, "--illusion-backend=vllm", "--illusion-backend-args=[4096]"),
                           ("--illusion-backend-args", "'[4096]'", "is not a JSON object (a JSON array)")),
    "backend-args own key": ((*ACTIVE, "--illusion-backend=vllm", '--illusion-backend-args={"dtype": "half"}'),
                             ("--illusion-backend-args", "'dtype'", "--illusion-dtype instead")),
    "backend-args parallel key": ((*ACTIVE, "--illusion-backend=vllm", '--illusion-backend-args={"tensor_parallel_size": 2}'),
                                  ("--illusion-backend-args", "'tensor_parallel_size'", "--illusion-tensor-parallel-size")),
    "tensor-parallel on hf": ((*ACTIVE, "--illusion-tensor-parallel-size=2"),
                              ("--illusion-tensor-parallel-size", "needs --illusion-backend=vllm")),
    "pipeline-parallel on hf": ((*ACTIVE, "--illusion-backend=hf", "--illusion-pipeline-parallel-size=2"),
                                ("--illusion-pipeline-parallel-size", "needs --illusion-backend=vllm")),
    "backend-args on hf": ((*ACTIVE, '--illusion-backend-args={"max_model_len": 4096}'),
                           ("--illusion-backend-args", "needs --illusion-backend=vllm")),
}


def assert_usage_error(result: pytest.RunResult, *names: str) -> None:
    """Exit code 4, one `ERROR:` line naming everything in `names`, and no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    for name in names:
        assert name in errors[0], (name, errors[0])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize("args, names", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_option_value_is_a_usage_error(pytester: pytest.Pytester, args: tuple, names: tuple) -> None:
    assert_usage_error(pytester.runpytest(*args), *names)


@pytest.mark.parametrize("key, value, names", [
    ("illusion_items", "0", ("illusion_items (ini)", "0", "at least 1")),
    ("illusion_gate_on", "maybe", ("illusion_gate_on (ini)", "'maybe'")),
    ("illusion_alpha", "0", ("illusion_alpha (ini)", "'0'", "significance level")),
    ("illusion_no_cache", "maybe", ("illusion_no_cache (ini)", "'maybe'", "true")),
    ("illusion_backend_args", "4096", ("illusion_backend_args (ini)", "'4096'", "not a JSON object (a JSON number)")),
    ("illusion_backend_args", '{"seed": 1}', ("illusion_backend_args (ini)", "'seed'", "--illusion-seed")),
])
def test_bad_ini_value_is_a_usage_error_naming_the_key(pytester: pytest.Pytester, key: str, value: str,
                                                        names: tuple) -> None:
    pytester.makeini(f"[pytest]\nillusion_from_results = results.json\n{key} = {value}\n")
    (pytester.path / "results.json").write_text("{}")
    assert_usage_error(pytester.runpytest(), *names)


def test_cli_value_overrides_a_bad_ini_value(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nillusion_items = 0\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    # The ini value is never parsed, and the plugin stays inactive without a model.
    result = pytester.runpytest("--illusion-items=3", "--illusion-from-results=missing.json")
    assert_usage_error(result, "--illusion-from-results", "'missing.json'")
    pytester.makeini("[pytest]\nillusion_items = 3\nillusion_max_dissociation = 0.2\n")
    assert pytester.runpytest().ret == 0  # ini-only gate settings are shared setup, not an error


def test_invalid_results_file_is_a_usage_error_naming_file_and_field(pytester: pytest.Pytester) -> None:
    (pytester.path / "results.json").write_text('{"schema": "something-else", "items": []}')
    result = pytester.runpytest("--illusion-from-results=results.json")
    assert_usage_error(result, "results.json", "'schema'", "illusion-checks/results/v1")


def test_vllm_options_default_to_one_device_and_parse_from_the_cli_and_the_ini(pytester: pytest.Pytester) -> None:
    from illusion_checks.pytest_plugin.config import read_config

    spec = read_config(pytester.parseconfig(*ACTIVE)).spec
    assert (spec.backend, spec.tensor_parallel_size, spec.pipeline_parallel_size) == ("hf", 1, 1)
    assert spec.backend_args.to_dict() == {} and not spec.backend_args
    pytester.makeini('[pytest]\nillusion_backend = vllm\nillusion_pipeline_parallel_size = 2\n'
                     'illusion_backend_args = {"gpu_memory_utilization": 0.8, "max_model_len": 4096}\n')
    spec = read_config(pytester.parseconfig(*ACTIVE, "--illusion-tensor-parallel-size=8")).spec
    assert (spec.backend, spec.tensor_parallel_size, spec.pipeline_parallel_size) == ("vllm", 8, 2)
    assert spec.backend_args.to_dict() == {"gpu_memory_utilization": 0.8, "max_model_len": 4096}
    # The CLI's JSON object replaces the ini's (it is not merged into it).
    spec = read_config(pytester.parseconfig(*ACTIVE, '--illusion-backend-args={"distributed_executor_backend": "ray"}')).spec
    assert spec.backend_args.to_dict() == {"distributed_executor_backend": "ray"}
