"""End-to-end: the plugin evaluating a tiny real model (built once per session), with its cache.

A randomly initialised model answers nothing, so these runs collect gate items only, and every
gate with a threshold fails with a reason; what they check is how often models load, what the
cache holds, and what the user is told.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.plugin_runs import LOAD_COUNTER, junit_outcomes
from tests.helpers.need import need_module

WORKER_IMPORTS = """

def pytest_sessionfinish(session):
    import json, sys
    if hasattr(session.config, "workerinput"):
        heavy = sorted(name for name in ("torch", "transformers") if name in sys.modules)
        with open(os.path.join(os.path.dirname(__file__), f"worker-{os.getpid()}.json"), "w") as handle:
            json.dump(heavy, handle)
"""
EVAL_ARGS = ("--illusion-compress=magnitude:0.5", "--illusion-items=3", "--illusion-langs=en,de",
             "--illusion-no-reachability", "--illusion-max-dissociation=0.5")


@dataclass(frozen=True)
class FirstRun:
    """What the first evaluation (empty cache, `-n 2`, its own process) left behind."""

    ret: int
    stdout: str
    loads: list[str]
    worker_imports: list[list[str]]
    results: dict[str, Any]
    outcomes: list[tuple[str, str]]
    cache_dir: Path


@pytest.fixture(scope="module")
def first_run(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    need_module("xdist")
    directory = tmp_path_factory.mktemp("first-run")
    (directory / "conftest.py").write_text(LOAD_COUNTER + WORKER_IMPORTS)
    cache_dir = directory / "cache"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--illusion-model={tiny_llama_dir}",
               *EVAL_ARGS, f"--illusion-cache-dir={cache_dir}", "-n", "2", "--junitxml=junit.xml"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ILLUSION_CHECKS_CACHE": str(directory / "user-cache")}
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=300)
    loads = directory / "loads.txt"
    return FirstRun(
        ret=done.returncode, stdout=done.stdout + done.stderr,
        loads=loads.read_text().splitlines() if loads.exists() else [],
        worker_imports=[json.loads(path.read_text()) for path in sorted(directory.glob("worker-*.json"))],
        results=json.loads((directory / "reports" / "illusion-results.json").read_text(encoding="utf-8")),
        outcomes=junit_outcomes(directory / "junit.xml"), cache_dir=cache_dir,
    )


def rerun(pytester: pytest.Pytester, model: Path, cache_dir: Path, *extra: str) -> pytest.RunResult:
    """The first run's command again, in-process and without xdist, on a copy of its cache."""
    pytester.makeconftest(LOAD_COUNTER)
    shutil.copytree(cache_dir, pytester.path / "cache")
    return pytester.runpytest(f"--illusion-model={model}", *EVAL_ARGS, "--illusion-cache-dir=cache",
                              "--junitxml=junit.xml", *extra)


def written_results(pytester: pytest.Pytester) -> dict[str, Any]:
    return json.loads((pytester.path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))


def close(a: Any, b: Any) -> bool:
    """JSON values equal up to float round-off (recomputed log-probabilities)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-4,
                                                                                            abs_tol=1e-5)
    return a == b


def test_xdist_run_loads_each_model_once_on_the_controller(first_run: FirstRun, tiny_llama_dir: Path) -> None:
    assert first_run.ret == 1, first_run.stdout
    # magnitude pruning compresses a copy of the loaded reference: one load for the whole run.
    assert [line.split(" ", 1)[1] for line in first_run.loads] == [str(tiny_llama_dir)]
    assert first_run.worker_imports == [[], []]  # the workers read the controller's results: no torch at all
    for line in ("2 workers [9 items]", "models loaded: 1; from cache: nothing",
                 "FAIL dissociation[en] = n/a, needs max 0.50 on point: FAIL (no reference-both-correct items in 'en'"):
        assert line in first_run.stdout
    assert first_run.outcomes == sorted([(f"illusion.{lang}::{metric}", "failure" if metric == "dissociation" else "skipped")
                                         for lang in ("de", "en", "overall")
                                         for metric in ("dissociation", "delta_pr", "retention")])
    assert first_run.results["summary"]["overall"]["n_items"] == 6


def test_identical_rerun_loads_nothing_and_matches_the_xdist_run(pytester: pytest.Pytester, first_run: FirstRun,
                                                                  tiny_llama_dir: Path) -> None:
    result = rerun(pytester, tiny_llama_dir, first_run.cache_dir, "-n", "0")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["collected 9 items", "*models loaded: 0; from cache: reference, compressed"])
    assert not (pytester.path / "loads.txt").exists()
    assert junit_outcomes(pytester.path / "junit.xml") == first_run.outcomes
    rerun_results = written_results(pytester)
    assert rerun_results["items"] == first_run.results["items"]
    assert rerun_results["summary"] == first_run.results["summary"]


def test_cached_rerun_imports_neither_torch_nor_transformers(first_run: FirstRun, tiny_llama_dir: Path,
                                                              tmp_path: Path) -> None:
    # CI re-gates often: with every outcome cached, the run costs what pytest costs, not the seconds
    # importing torch and transformers takes (benchmarks/cached_rerun.py measures it).
    (tmp_path / "conftest.py").write_text(
        "import json, sys\n\n"
        "def pytest_sessionfinish(session):\n"
        "    heavy = sorted(name for name in ('torch', 'transformers') if name in sys.modules)\n"
        "    open('imports.json', 'w').write(json.dumps(heavy))\n")
    shutil.copytree(first_run.cache_dir, tmp_path / "cache")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--illusion-model={tiny_llama_dir}",
               *EVAL_ARGS, "--illusion-cache-dir=cache"]
    done = subprocess.run(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and "models loaded: 0; from cache: reference, compressed" in done.stdout, done.stdout
    assert json.loads((tmp_path / "imports.json").read_text()) == []


def test_outcomes_probed_at_another_batch_size_are_not_reused(pytester: pytest.Pytester, first_run: FirstRun,
                                                               tiny_llama_dir: Path) -> None:
    # A sampled answer can differ between batch sizes (README, "Speed"): the cache key holds it.
    keys = [json.loads(path.read_text())["key"] for path in first_run.cache_dir.glob("*.json")]
    assert [key["batch_size"] for key in keys] == [16, 16]
    result = rerun(pytester, tiny_llama_dir, first_run.cache_dir, "--illusion-batch-size=1")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*models loaded: 1; from cache: nothing"])
    assert close(written_results(pytester)["items"], first_run.results["items"])
    assert "batch_size" not in written_results(pytester)["config"]["probes"]


def test_corrupted_cache_entry_warns_and_is_recomputed(pytester: pytest.Pytester, first_run: FirstRun,
                                                       tiny_llama_dir: Path) -> None:
    entries = {json.loads(path.read_text())["key"]["role"]: path.name for path in first_run.cache_dir.glob("*.json")}
    assert entries.keys() == {"reference", "compressed"}
    pytester.makeconftest(LOAD_COUNTER)
    shutil.copytree(first_run.cache_dir, pytester.path / "cache")
    damaged = pytester.path / "cache" / entries["reference"]
    damaged.write_text(damaged.read_text()[: 200])  # truncated mid-write by some other tool
    result = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", *EVAL_ARGS, "--illusion-cache-dir=cache")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        f"illusion-checks: warning: cache entry *{damaged.name} is unreadable (JSONDecodeError: *); recomputing it",
        "*= warnings summary =*",
        "*PytestWarning: illusion-checks: cache entry * is unreadable*",
        "*models loaded: 1; from cache: compressed",
    ])
    assert len((pytester.path / "loads.txt").read_text().splitlines()) == 1
    recomputed = written_results(pytester)
    assert close(recomputed["items"], first_run.results["items"])
    assert close(recomputed["summary"], first_run.results["summary"])
    assert json.loads(damaged.read_text())["key"]["role"] == "reference"  # rewritten whole


@pytest.mark.parametrize("model, langs, names", [
    ("no-such-model", "en", ("unknown model 'no-such-model'", "use an alias", "smollm2-135m", "local model directory")),
    ("./no/such/dir", "en", ("model path './no/such/dir' does not exist",)),
    (None, "en,xx", ("--illusion-langs", "xx not in data set 'fixtures'", "which has ", "en")),
], ids=["unknown-alias", "missing-path", "unknown-language"])
def test_model_and_data_errors_are_one_line(pytester: pytest.Pytester, tiny_llama_dir: Path, model: str | None,
                                            langs: str, names: tuple) -> None:
    result = pytester.runpytest(f"--illusion-model={model or tiny_llama_dir}", "--illusion-compress=magnitude:0.5",
                                f"--illusion-langs={langs}", "--illusion-items=1", "--illusion-no-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr.str()
    for name in names:
        assert name in errors[0], (name, errors[0])


def test_save_compressed_on_a_cache_hit_compresses_and_saves_once(pytester: pytest.Pytester, first_run: FirstRun,
                                                                   tiny_llama_dir: Path) -> None:
    from safetensors.torch import load_file

    result = rerun(pytester, tiny_llama_dir, first_run.cache_dir, "--illusion-save-compressed=saved")
    assert result.ret == 1
    saved = pytester.path / "saved"
    result.stdout.fnmatch_lines([
        f"illusion-checks: compressed outcomes came from the cache; compressing again to save the model to {saved}",
        f"illusion-checks: compressed model saved to {saved}",
        "*models loaded: 1; from cache: reference, compressed",
    ])
    weights = load_file(str(saved / "model.safetensors"))
    pruned = weights["model.layers.0.self_attn.q_proj.weight"]
    assert abs(float((pruned == 0).float().mean()) - 0.5) < 0.01  # the magnitude:0.5 copy, not the reference
    assert (saved / "tokenizer.json").is_file()
    assert sorted(p.name for p in pytester.path.iterdir() if p.name.startswith(".saved")) == []  # no staging left

    again = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", *EVAL_ARGS, "--illusion-cache-dir=cache",
                               "--illusion-save-compressed=saved")
    again.stdout.fnmatch_lines([f"illusion-checks: {saved} already holds this compressed model; not saved again",
                                "*models loaded: 0; from cache: reference, compressed"])
