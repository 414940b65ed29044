"""Sweeps and the search, end to end: several specs in one run probe the reference once and each
spec in turn, generate per-spec tests (`illusion[SPEC]/...`), write one v2 results file that
`--illusion-from-results` re-gates; an interrupted sweep resumes from the cache; the search picks
the highest passing level and exits 0 when one passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from illusion_checks import EvaluationSpec, GateSpec, evaluate
from illusion_checks.results import SCHEMA_V2, runs_of
from tests.helpers.plugin_runs import LOAD_COUNTER, junit_outcomes

TINY_ARGS = ("--illusion-items=2", "--illusion-langs=en,de", "--illusion-no-reachability")


def _written(pytester: pytest.Pytester) -> dict[str, Any]:
    return json.loads((pytester.path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))


def test_a_sweep_on_a_tiny_model_probes_the_reference_once_and_tests_each_spec(
        pytester: pytest.Pytester, tiny_llama_dir: Path) -> None:
    pytester.makeconftest(LOAD_COUNTER)
    pytester.makepyfile(test_mine="""
def test_every_spec_is_a_run(illusion_results):
    specs = [run.config["compressed"]["spec"] for run in illusion_results.runs]
    assert specs == ["magnitude:0.2", "rtn-int4"] and illusion_results.search is None
    assert illusion_results.config["compressed"]["spec"] == "magnitude:0.2" and illusion_results.items
""")
    result = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", "--illusion-compress=magnitude:0.2,rtn-int4",
                                *TINY_ARGS, "--illusion-cache-dir=cache", "--junitxml=junit.xml")
    assert result.ret == 0, result.stdout.str()[-3000:]
    assert (pytester.path / "loads.txt").read_text().count(str(tiny_llama_dir)) == 1  # the reference, once
    results = _written(pytester)
    assert results["schema"] == SCHEMA_V2 and results["search"] is None
    runs = results["runs"]
    assert [run["config"]["compressed"]["spec"] for run in runs] == ["magnitude:0.2", "rtn-int4"]
    assert runs[0]["items"] and [i["reference"] for i in runs[0]["items"]] == [i["reference"] for i in runs[1]["items"]]
    outcomes = dict(junit_outcomes(pytester.path / "junit.xml"))
    assert outcomes["test_mine::test_every_spec_is_a_run"] == "passed"
    for spec in ("magnitude:0.2", "rtn-int4"):  # no threshold set: each spec's gates are reported, skipped
        assert {outcomes[f"illusion[{spec}].{lang}::{metric}"] for lang in ("de", "en", "overall")
                for metric in ("dissociation", "delta_pr", "retention")} == {"skipped"}
    result.stdout.fnmatch_lines(["*one row per compression spec*", "*magnitude:0.2 *", "*rtn-int4 *"])
    # A node id names one spec's test: only it runs, and nothing is probed again.
    again = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", "--illusion-compress=magnitude:0.2,rtn-int4",
                               *TINY_ARGS, "--illusion-cache-dir=cache", "illusion[rtn-int4]/overall::delta_pr")
    again.assert_outcomes(skipped=1)
    assert "from cache: reference, compressed" in again.stdout.str()
    # `illusion` (what `make demo` passes) names every spec's tests.
    everything = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", "--illusion-compress=magnitude:0.2,rtn-int4",
                                    *TINY_ARGS, "--illusion-cache-dir=cache", "illusion")
    everything.assert_outcomes(skipped=len(outcomes) - 1)


def test_a_failing_spec_fails_the_sweep_and_from_results_re_gates_the_sweep_file(
        pytester: pytest.Pytester, tiny_llama_dir: Path) -> None:
    args = (f"--illusion-model={tiny_llama_dir}", "--illusion-compress=magnitude:0.2,magnitude:0.9", *TINY_ARGS,
            "--illusion-cache-dir=cache")
    assert pytester.runpytest(*args).ret == 0  # no threshold: every gate is reported, none fails
    sweep_file = pytester.path / "sweep.json"
    sweep_file.write_text((pytester.path / "reports" / "illusion-results.json").read_text())
    # A random tiny model gets nothing right: no both-correct item, so retention is undefined and a
    # retention gate fails for every spec, with the reason.
    strict = pytester.runpytest(f"--illusion-from-results={sweep_file}", "--illusion-min-retention=0.5")
    assert strict.ret == 1
    strict.stdout.fnmatch_lines(["*FAILED illusion[[]magnitude:0.2[]]/overall::retention*",
                                 "*FAILED illusion[[]magnitude:0.9[]]/overall::retention*"])
    regated = _written(pytester)
    assert [run["gates"][-1]["passed"] for run in regated["runs"]] == [False, False]
    assert "models loaded: 0" in strict.stdout.str()
    broken = json.loads(sweep_file.read_text())
    broken["runs"][1]["summary"]["overall"]["n_items"] += 1
    sweep_file.write_text(json.dumps(broken))
    bad = pytester.runpytest(f"--illusion-from-results={sweep_file}")
    assert bad.ret == 4 and "runs[1]" in bad.stderr.str()


def test_an_interrupted_sweep_resumes_where_it_stopped(tiny_llama_dir: Path, tmp_path: Path) -> None:
    spec = EvaluationSpec(model=str(tiny_llama_dir), compress="magnitude:0.2,magnitude:0.5,rtn-int4", langs=("en",),
                          items=2, no_reachability=True, cache_dir=str(tmp_path / "cache"))
    seen: list[str] = []

    def interrupt_third(phase: str, done: int, total: int) -> None:
        if phase.startswith("compress") and done == 0:
            seen.append(phase)
            if len(seen) == 3:
                raise KeyboardInterrupt  # the user stops the run while the third spec compresses

    with pytest.raises(KeyboardInterrupt):
        evaluate(spec, json_path=tmp_path / "out.json", progress=interrupt_third)
    assert not (tmp_path / "out.json").exists() and len(list((tmp_path / "cache").glob("*.json"))) == 3
    log: list[str] = []
    resumed = evaluate(spec, json_path=tmp_path / "out.json", log=log.append)
    assert sum("compressed outcomes: from cache" in line for line in log) == 2
    assert any("reference outcomes: from cache" in line for line in log)
    assert [run["config"]["compressed"]["spec"] for run in resumed.results["runs"]] == \
        ["magnitude:0.2", "magnitude:0.5", "rtn-int4"]
    assert resumed.stats.models_loaded == 1  # the third spec needed the reference: loaded once


@pytest.mark.parametrize("values, gates, message", [
    ({"compress": "wanda:0.5,wanda:0.5"}, GateSpec(), "'wanda:0.5' is listed twice"),
    ({"compress": "wanda:0.5,nope:1"}, GateSpec(), "--illusion-compress: "),
    ({"compress": "wanda:0.4,wanda:0.5", "save_compressed": "out"}, GateSpec(), "saves one compressed model"),
    ({"search": "wanda:0.3..0.8", "compress": "wanda:0.5"}, GateSpec(), "exclude each other"),
    ({"search": "rtn-int4:0.1..0.5"}, GateSpec(), "--illusion-search: "),
    ({"search": "wanda:0.3..0.8", "search_step": "0.9"}, GateSpec(), "--illusion-search-step"),
    ({"search": "wanda:0.3..0.8"}, GateSpec(), "--illusion-search needs --illusion-min-retention"),
    ({"search": "wanda:0.3..0.8"}, GateSpec(max_dissociation=0.5), "--illusion-search needs --illusion-min-retention: "
                                                                   ".*dissociation does not"),
])
def test_bad_sweeps_and_searches_are_one_line_errors_before_any_model_loads(
        values: dict[str, Any], gates: GateSpec, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from illusion_checks import lifecycle

    monkeypatch.setattr(lifecycle.Models, "load", lambda *args: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError, match=message) as caught:
        evaluate(EvaluationSpec(model="smollm2-135m", langs=("en",), items=2, no_cache=True, **values), gates)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_search_on_smollm2_finds_the_highest_passing_magnitude_level(pytester: pytest.Pytester) -> None:
    """Magnitude pruning of a real model: retention falls with sparsity, so the search finds an edge."""
    import illusion_checks.backends.hf.backend  # noqa: F401  (torch is imported once, before pytester's runs)

    args = ("--illusion-model=smollm2-135m", "--illusion-search=magnitude:0.1..0.7", "--illusion-search-step=0.2",
            "--illusion-langs=en", "--illusion-items=6", "--illusion-no-reachability",
            "--illusion-min-retention=0.6", "--illusion-cache-dir=cache", "--junitxml=junit.xml")
    result = pytester.runpytest(*args)
    results = _written(pytester)
    search = results["search"]
    print(json.dumps(search))
    assert search["evaluated"][:2] == ["magnitude:0.1", "magnitude:0.7"]
    passed = {level["spec"]: level["passed"] for level in search["levels"]}
    best = search["best"]
    assert best is not None and passed[best] and result.ret == 0, result.stdout.str()[-3000:]
    assert all(not ok for spec, ok in passed.items() if float(spec.split(":")[1]) > float(best.split(":")[1]))
    assert [run["config"]["compressed"]["spec"] for run in runs_of(results)] == sorted(passed, key=lambda s: float(s[10:]))
    outcomes = dict(junit_outcomes(pytester.path / "junit.xml"))
    assert outcomes["illusion[search]::best"] == "passed"
    failing = [node for node, outcome in outcomes.items() if node.endswith("::retention") and outcome != "passed"]
    assert failing and all(outcomes[node] == "xfailed" for node in failing)  # a failing level is a result
    result.stdout.fnmatch_lines([f"*highest passing level: {best}*"])
    # Even the lowest level failing: no best, the search's verdict fails, and nothing is probed again.
    strict = pytester.runpytest(*args[:-3], "--illusion-min-retention=0.6", "--illusion-max-delta-pr=-1.0",
                                "--illusion-cache-dir=cache")
    assert strict.ret == 1 and _written(pytester)["search"]["best"] is None
    strict.stdout.fnmatch_lines(["*FAILED illusion[[]search[]]::best*no level of magnitude:0.1..0.7 passes*"])


def test_a_search_refuses_the_mcnemar_gate_which_has_no_retention_threshold() -> None:
    from illusion_checks.sweep import check_search

    with pytest.raises(ValueError, match="--illusion-search chooses a level by --illusion-min-retention.*"
                                         "--illusion-gate-on=mcnemar takes none"):
        check_search(EvaluationSpec(model="m", search="wanda:0.3..0.5"), GateSpec(gate_on="mcnemar"))
