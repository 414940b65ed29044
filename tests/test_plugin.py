"""End-to-end tests of the pytest plugin on crafted results files (no model is loaded here).

`--illusion-from-results` drives the real plugin (options, gates, items, terminal summary,
report, JUnit XML, xdist) with results whose every outcome the test knows in advance.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from illusion_checks.metrics import summarize
from illusion_checks.results import note
from tests.helpers.plugin_runs import (LOAD_COUNTER, SEED, USER_TEST, junit_outcomes, mc_only_item, n_both,
                                        write_results)
from tests.helpers.synth import PROFILES, make_results
from tests.helpers.need import need_module

# -- verdicts and the terminal summary -------------------------------------------------------
def test_pass_path_exits_0_with_summary_table_and_paths(pytester: pytest.Pytester, crafted: dict) -> None:
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0.9",
                                "--illusion-min-retention=0.1", "--illusion-max-delta-pr=1")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "collected * items",
        "*= illusion-checks summary =*",
        "*lang*n*kept*mc_only*prod_only*lost*dissociation [[]95% CI[]]*ΔPR [[]95% CI[]]*retention*gates*",
        "PASS dissociation[[]en[]] = * <= max 0.90 on point: PASS",
        "PASS retention[[]overall[]] = * >= min 0.10 on point: PASS",
        f"illusion-checks report: {pytester.path / 'reports' / 'illusion-report.html'}",
        f"illusion-checks results: {pytester.path / 'reports' / 'illusion-results.json'}",
        f"illusion-checks: gates re-applied to {source} in *s (wall time); models loaded: 0",
    ])
    result.assert_outcomes(passed=3 * n_both(crafted) - 2 + 9, xfailed=2)
    written = json.loads((pytester.path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))
    assert len(written["gates"]) == 9 and all(gate["passed"] for gate in written["gates"])
    assert (pytester.path / "reports" / "illusion-report.html").is_file()


def test_fail_path_exits_1_naming_the_failed_gates(pytester: pytest.Pytester, crafted: dict) -> None:
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "*= illusion-checks summary =*",
        "PASS dissociation[[]en[]] = 0.00 * <= max 0.00 on point: PASS",
        "FAIL dissociation[[]sw[]] = * > max 0.00 on point: FAIL",
        "FAIL dissociation[[]overall[]] = * > max 0.00 on point: FAIL",
        "FAILED illusion/sw::dissociation - dissociation[[]sw[]] = *",
        "FAILED illusion/overall::dissociation - *",
    ])
    result.assert_outcomes(passed=3 * n_both(crafted) - 2 + 1, failed=2, xfailed=2, skipped=6)


@pytest.mark.parametrize("gate_on, ret", [("point", 0), ("ci95", 1)])
def test_gate_on_ci95_compares_the_conservative_end(pytester: pytest.Pytester, crafted: dict, gate_on: str,
                                                     ret: int) -> None:
    overall = crafted["summary"]["overall"]
    point, high = overall["dissociation_rate"], overall["dissociation_ci95"][1]
    assert point < high
    threshold = round((point + high) / 2, 4)  # passes on the point estimate, fails on the CI's upper end
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", f"--illusion-gate-on={gate_on}",
                                f"--illusion-max-dissociation=overall={threshold}", "--illusion-item-policy=off")
    assert result.ret == ret
    verdict = "PASS" if ret == 0 else "FAIL"
    result.stdout.fnmatch_lines([f"{verdict} dissociation[[]overall[]] = * on {gate_on}: {verdict}"])


def test_undefined_metric_fails_its_gate_with_the_reason(pytester: pytest.Pytester, crafted: dict) -> None:
    results = copy.deepcopy(crafted)
    for item in results["items"]:
        if item["lang"] == "en":
            item["reference"]["mc"]["correct"] = item["both_correct"] = False
            item["fate"] = None
    results["summary"] = summarize(results["items"], n_resamples=200, seed=SEED)
    source = write_results(pytester, results)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0.9",
                                "--illusion-item-policy=off")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*_ illusion/en::dissociation _*",
                                 "dissociation[[]en[]] = n/a, needs max 0.90 on point: FAIL (no reference-both-correct"
                                 " items in 'en'*)"])
    # The failure entry says the reason once, not twice. (Only that section is counted: pytest leaves the
    # short-summary line untruncated when it runs under CI, so the whole output holds a varying number.)
    output = result.stdout.str()
    failure_entry = output[output.index("FAILURES"):output.index("illusion-checks summary")]
    assert failure_entry.count("the reference model answers none of them") == 1


def test_terminal_summary_ends_with_the_notes_and_uninterpretable_ranks(pytester: pytest.Pytester) -> None:
    sw = dataclasses.replace(PROFILES["sw"], begins_with_gold=0.1, has_exemplar=False)
    hostile = "calibration file evil\x1b[31m.txt\nhas 3 of 16 samples"  # a file name is untrusted text
    results = make_results(["en", "sw"], 30, seed=SEED, n_resamples=20, gates=False, profiles={"sw": sw},
                           notes=[note("calibration", None, hostile)])
    source = write_results(pytester, results)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-item-policy=off")
    lines = result.stdout.lines
    table_end = max(n for n, line in enumerate(lines) if line.startswith("└"))
    one_shot = next(n for n, line in enumerate(lines) if line.startswith("illusion-checks: note: sw: no 1-shot"))
    assert one_shot > table_end
    assert lines[one_shot + 1] == "illusion-checks: note: calibration file evil\\x1b[31m.txt\\nhas 3 of 16 samples"
    ref, comp = (results["summary"]["per_language"]["sw"]["answer_start"][m] for m in ("reference", "compressed"))
    assert lines[one_shot + 2] == (
        "illusion-checks: gold rank not interpretable (under 50% of correct FF answers begin with the gold where "
        f"the answer starts) for: sw (reference {ref['share']:.0%} of {ref['n_ff_correct']}, "
        f"compressed {comp['share']:.0%} of {comp['n_ff_correct']})")
    assert "\x1b[31m" not in result.stdout.str()


# -- item policies ---------------------------------------------------------------------------
def test_item_policy_xfail_reason_reads_like_a_diagnosis(pytester: pytest.Pytester, crafted: dict) -> None:
    item = mc_only_item(crafted)
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "-rx")
    assert result.ret == 0
    node = f"illusion/sw/{item['id']}"
    result.stdout.fnmatch_lines_random([
        f"XFAIL {node}::produces - no longer produces the gold: fate=mc_only gold='{item['gold']}' rank 1->4;"
        " compressed FF says 'a confidently wrong answer'",
        f"XFAIL {node}::reaches - no longer reaches the gold: fate=mc_only *",
    ])
    result.assert_outcomes(passed=3 * n_both(crafted) - 2, xfailed=2, skipped=9)


def test_item_policy_fail_fails_the_run(pytester: pytest.Pytester, crafted: dict) -> None:
    item = mc_only_item(crafted)
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-item-policy=fail")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        f"*_ illusion/sw/{item['id']}::produces _*",
        "no longer produces the gold: fate=mc_only * rank 1->4; compressed FF says 'a confidently wrong answer'",
    ])
    assert "Traceback" not in result.stdout.str()
    result.assert_outcomes(passed=3 * n_both(crafted) - 2, failed=2, skipped=9)


def test_item_policy_off_collects_gates_only(pytester: pytest.Pytester, crafted: dict) -> None:
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-item-policy=off",
                                "--illusion-min-retention=0.5", "--collect-only", "-q")
    assert result.ret == 0
    ids = [line for line in result.stdout.lines if line.startswith("illusion/")]
    assert ids == [f"illusion/{lang}::{metric}" for lang in ("en", "sw", "overall")
                   for metric in ("dissociation", "delta_pr", "retention")]
    result.stdout.fnmatch_lines(["9 tests collected*"])


def test_gate_on_mcnemar_gates_every_languages_ff_drop(pytester: pytest.Pytester, crafted: dict) -> None:
    source = write_results(pytester, crafted)
    listed = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-gate-on=mcnemar",
                                "--illusion-item-policy=off", "--collect-only", "-q")
    assert [line for line in listed.stdout.lines if line.endswith("::ff_drop")] == [
        f"illusion/{lang}::ff_drop" for lang in ("en", "sw", "overall")]
    # The crafted run loses one FF answer: no significant drop.
    kept = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-gate-on=mcnemar",
                              "--illusion-item-policy=off")
    assert kept.ret == 0
    kept.stdout.fnmatch_lines(["PASS ff_drop[[]sw[]] = * (drops 1, gains 0; McNemar p = 1) > alpha 0.05 on mcnemar: PASS"])
    results = copy.deepcopy(crafted)  # now the compressed model loses every FF answer the reference had
    for item in results["items"]:
        item["compressed"]["ff"]["correct"] = False
        item["fate"] = "mc_only" if item["both_correct"] and item["compressed"]["mc"]["correct"] else item["fate"]
    results["summary"] = summarize(results["items"], n_resamples=200, seed=SEED)
    drops = results["summary"]["overall"]["mcnemar"]["ff"]["drops"]
    assert drops >= 6  # enough for McNemar at 0.05
    lost = pytester.runpytest(f"--illusion-from-results={write_results(pytester, results)}",
                              "--illusion-gate-on=mcnemar", "--illusion-item-policy=off")
    assert lost.ret == 1
    lost.stdout.fnmatch_lines([f"FAIL ff_drop[[]overall[]] = * (drops {drops}, gains 0; McNemar p = *) <= alpha 0.05 "
                               "on mcnemar: FAIL", "FAILED illusion/overall::ff_drop - *"])


@pytest.mark.parametrize("beam", ["missed", "not probed"])
def test_reaches_passes_when_only_sampling_reaches_the_gold(pytester: pytest.Pytester, crafted: dict,
                                                              beam: str) -> None:
    results = copy.deepcopy(crafted)
    item = mc_only_item(results)
    outcome = item["compressed"]
    outcome["sample"]["reached"] = True  # greedy FF misses the gold, and beam search too (or never ran)
    if beam == "not probed":
        outcome["beam"] = None
    assert not outcome["ff"]["correct"] and not (outcome["beam"] or {}).get("reached")
    results["summary"] = summarize(results["items"], n_resamples=200, seed=SEED)
    source = write_results(pytester, results)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-item-policy=fail", "-v")
    assert result.ret == 1
    node = f"illusion/sw/{item['id']}"
    result.stdout.fnmatch_lines_random([f"{node}::produces FAILED*", f"{node}::recognizes PASSED*",
                                        f"{node}::reaches PASSED*"])
    result.assert_outcomes(passed=3 * n_both(results) - 1, failed=1, skipped=9)


# -- from-results, JUnit XML, ini -------------------------------------------------------------
def test_from_results_regates_and_rerenders_without_a_model(pytester: pytest.Pytester, crafted: dict) -> None:
    pytester.makeconftest(LOAD_COUNTER)
    source = write_results(pytester, crafted)
    first = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0.9")
    assert first.ret == 0
    report = pytester.path / "html" / "regated.html"  # a folder that does not exist yet
    second = pytester.runpytest("--illusion-from-results=reports/illusion-results.json", "--illusion-json=regated.json",
                                f"--illusion-report={report}", "--illusion-max-dissociation=0.01")
    assert second.ret == 1
    second.stdout.fnmatch_lines(["FAIL dissociation[[]sw[]] = * > max 0.01 on point: FAIL",
                                 f"illusion-checks report: {report}", "*models loaded: 0"])
    regated = json.loads((pytester.path / "regated.json").read_text(encoding="utf-8"))
    assert {gate["threshold"] for gate in regated["gates"]} == {0.01}
    assert regated["items"] == crafted["items"]
    assert report.is_file() and report.stat().st_size > 0
    assert not (pytester.path / "loads.txt").exists()


def test_junit_xml_carries_gate_values_as_properties(pytester: pytest.Pytester, crafted: dict) -> None:
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0.9",
                                "--junitxml=junit.xml")
    assert result.ret == 0
    cases = {f"{case.get('classname')}::{case.get('name')}": case
             for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    properties = {p.get("name"): p.get("value") for p in cases["illusion.overall::dissociation"].iter("property")}
    overall = crafted["summary"]["overall"]
    assert properties == {"dissociation[overall]": str(overall["dissociation_rate"]), "threshold": "0.9",
                          "compared": str(overall["dissociation_rate"]), "passed": "True"}
    ungated = {p.get("name"): p.get("value") for p in cases["illusion.sw::retention"].iter("property")}
    assert ungated == {"retention[sw]": str(crafted["summary"]["per_language"]["sw"]["retention"])}


@pytest.mark.parametrize("ini_file", ["pytest.ini", "pyproject.toml"])
def test_ini_configuration_and_cli_over_ini(pytester: pytest.Pytester, crafted: dict, ini_file: str) -> None:
    write_results(pytester, crafted)
    keys = {"illusion_from_results": "results.json", "illusion_max_dissociation": "0.01",
            "illusion_item_policy": "off", "illusion_json": "out/results.json"}
    if ini_file == "pytest.ini":
        pytester.makeini("[pytest]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items()))
    else:
        pytester.makepyprojecttoml("[tool.pytest.ini_options]\n"
                                   + "".join(f'{key} = "{value}"\n' for key, value in keys.items()))
    from_ini = pytester.runpytest()
    assert from_ini.ret == 1
    from_ini.assert_outcomes(failed=2, passed=1, skipped=6)
    cli_wins = pytester.runpytest("--illusion-max-dissociation=0.9", "--illusion-item-policy=xfail")
    assert cli_wins.ret == 0
    cli_wins.assert_outcomes(passed=3 * n_both(crafted) - 2 + 3, xfailed=2, skipped=6)


def test_ini_paths_are_relative_to_the_rootdir(pytester: pytest.Pytester, crafted: dict,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_results(pytester, crafted)
    pytester.makeini("[pytest]\nillusion_from_results = results.json\nillusion_json = out/results.json\n"
                     "illusion_report = out/report.html\n")
    subdir = pytester.mkdir("sub")
    monkeypatch.chdir(subdir)
    result = pytester.runpytest()
    assert result.ret == 0
    assert (pytester.path / "out" / "results.json").is_file() and (pytester.path / "out" / "report.html").is_file()
    assert not (subdir / "out").exists()


# -- xdist, the fixture, an inactive plugin ----------------------------------------------------
def test_xdist_collects_and_decides_like_a_single_process(pytester: pytest.Pytester, crafted: dict) -> None:
    need_module("xdist")
    source = write_results(pytester, crafted)
    args = [f"--illusion-from-results={source}", "--illusion-max-dissociation=0.1"]  # sw fails
    single = pytester.runpytest(*args, "-n", "0", "--junitxml=single.xml")
    parallel = pytester.runpytest(*args, "-n", "2", "--junitxml=parallel.xml")
    assert single.ret == parallel.ret == 1
    assert junit_outcomes(pytester.path / "single.xml") == junit_outcomes(pytester.path / "parallel.xml")
    assert len(junit_outcomes(pytester.path / "single.xml")) == 3 * n_both(crafted) + 9
    assert parallel.stdout.str().count("illusion-checks summary") == 1


def test_illusion_results_fixture_in_a_user_test(pytester: pytest.Pytester, crafted: dict) -> None:
    pytester.makepyfile(USER_TEST.format(n_items=len(crafted["items"]), mc_only=mc_only_item(crafted)["id"]))
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-item-policy=off")
    result.assert_outcomes(passed=1, skipped=9)
    inactive = pytester.runpytest("-rs")
    inactive.assert_outcomes(skipped=1)
    inactive.stdout.fnmatch_lines(["SKIPPED * illusion-checks is not active: pass --illusion-model"
                                   " (or --illusion-from-results)"])


RECORD_MODULES = """
import json, sys
from pathlib import Path

def pytest_unconfigure(config):
    names = sorted(m for m in sys.modules if m in ("torch", "transformers") or m.startswith("illusion_checks"))
    Path(__file__).with_name("modules.json").write_text(json.dumps(names))
"""


@pytest.mark.parametrize("args", [(), ("--help",)], ids=["run", "help"])
def test_inactive_plugin_adds_nothing_and_imports_no_torch(pytester: pytest.Pytester, args: tuple) -> None:
    pytester.makeconftest(RECORD_MODULES)
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == 0
    if not args:
        result.stdout.fnmatch_lines(["collected 1 item", "*1 passed*"])
        assert "illusion/" not in result.stdout.str() and "illusion-checks summary" not in result.stdout.str()
    else:
        result.stdout.fnmatch_lines(["*--illusion-model=ILLUSION_MODEL*", "*--illusion-gate-on=ILLUSION_GATE_ON*",
                                     "*95% CI*"])
    loaded = json.loads((pytester.path / "modules.json").read_text())
    assert "torch" not in loaded and "transformers" not in loaded
    assert "illusion_checks.pytest_plugin.plugin" in loaded and "illusion_checks.pytest_plugin.session" not in loaded


# -- a gate that cannot be fooled (issue 11) ----------------------------------------------------
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_gate_on_a_language_the_run_lacks_is_collected_and_fails(pytester: pytest.Pytester, workers: str) -> None:
    need_module("xdist")
    results = make_results(["en"], 8, seed=SEED, n_resamples=50, search_items=8, gates=False)
    source = write_results(pytester, results)
    # A typo, and a language left in a gate after it was dropped from --illusion-langs.
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=xx=0.2",
                                "--illusion-min-retention=sw=0.5", "--illusion-item-policy=off", "-n", workers)
    assert result.ret == 1
    # One call each: under xdist the failures are reported in whichever order the workers finish.
    result.stdout.fnmatch_lines([
        "*_ illusion/xx::dissociation _*",
        "dissociation[[]xx[]] = n/a, needs max 0.20 on point: FAIL "
        "(--illusion-max-dissociation names 'xx', but the results hold no items in 'xx'; languages in this run: en)",
    ])
    result.stdout.fnmatch_lines([
        "*_ illusion/sw::retention _*",
        "retention[[]sw[]] = n/a, needs min 0.50 on point: FAIL "
        "(--illusion-min-retention names 'sw', but the results hold no items in 'sw'; languages in this run: en)",
    ])
    result.assert_outcomes(failed=2, skipped=6)


def forged(results: dict[str, Any]) -> dict[str, Any]:
    """results whose summary says nothing was demoted, while its items still show the MC-only ones."""
    out = copy.deepcopy(results)
    for block in (out["summary"]["overall"], *out["summary"]["per_language"].values()):
        block["dissociation_rate"] = 0.0
    return out


def test_a_forged_summary_is_refused_naming_the_differing_fields(pytester: pytest.Pytester, crafted: dict) -> None:
    pytester.makeconftest(LOAD_COUNTER)
    assert crafted["summary"]["per_language"]["sw"]["dissociation_rate"] > 0
    source = write_results(pytester, forged(crafted), "reports/illusion-results.json")
    before = source.read_bytes()
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0.01")
    assert_one_usage_error(result, str(source), "summary does not match its items",
                           "summary.overall.dissociation_rate: stored 0.0 != recomputed",
                           "summary.per_language.sw.dissociation_rate: stored 0.0 != recomputed")
    assert source.read_bytes() == before
    assert not (pytester.path / "reports" / "illusion-report.html").exists()


def test_the_gates_read_the_summary_recomputed_from_the_items(pytester: pytest.Pytester, crafted: dict) -> None:
    # Results written before `answer_start` and `rank_interpretable` existed: nothing disagrees, the
    # recomputation fills them in, and the gates and outputs use it.
    older = copy.deepcopy(crafted)
    for block in (older["summary"]["overall"], *older["summary"]["per_language"].values()):
        del block["answer_start"], block["rank_interpretable"]
    source = write_results(pytester, older)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-max-dissociation=0.01",
                                "--illusion-item-policy=off")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["FAIL dissociation[[]sw[]] = * > max 0.01 on point: FAIL"])
    written = json.loads((pytester.path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))
    assert written["summary"] == json.loads(json.dumps(crafted["summary"]))


def assert_one_usage_error(result: pytest.RunResult, *names: str) -> None:
    """Exit 4, one `ERROR:` line naming everything in `names`, no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    for name in names:
        assert name in errors[0], (name, errors[0])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize("field", ["summary.per_language", "config.dataset", "config.compressed"])
def test_results_missing_a_field_the_report_reads_leave_the_file_untouched(pytester: pytest.Pytester,
                                                                        crafted: dict, field: str) -> None:
    broken = copy.deepcopy(crafted)
    section, key = field.split(".")
    del broken[section][key]
    # The default --illusion-json: re-rendering would rewrite this very file.
    source = write_results(pytester, broken, "reports/illusion-results.json")
    os.utime(source, (1_000_000_000, 1_000_000_000))
    before = source.read_bytes()
    result = pytester.runpytest("--illusion-from-results=reports/illusion-results.json", "--illusion-max-dissociation=0.9")
    assert_one_usage_error(result, "reports/illusion-results.json", f"missing field '{field}'")
    assert source.read_bytes() == before and source.stat().st_mtime == 1_000_000_000
    assert not (pytester.path / "reports" / "illusion-report.html").exists()


def test_report_and_json_on_the_same_path_are_refused(pytester: pytest.Pytester, crafted: dict) -> None:
    source = write_results(pytester, crafted)
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-report=out.json",
                                "--illusion-json=out.json")
    assert_one_usage_error(result, "--illusion-report", "--illusion-json", str(pytester.path / "out.json"))
    assert not (pytester.path / "out.json").exists()


def test_report_and_json_on_the_same_path_stop_before_any_model_loads(pytester: pytest.Pytester,
                                                                       tiny_llama_dir: Path) -> None:
    pytester.makeconftest(LOAD_COUNTER)
    result = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", "--illusion-compress=magnitude:0.5",
                                "--illusion-langs=en", "--illusion-items=2", "--illusion-no-reachability",
                                "--illusion-no-cache", "--illusion-report=out/same", "--illusion-json=out/../out/same")
    assert_one_usage_error(result, "--illusion-report", "--illusion-json", "same file")
    assert not (pytester.path / "loads.txt").exists()


def test_item_ids_with_node_id_syntax_are_sanitised_and_kept(pytester: pytest.Pytester, crafted: dict) -> None:
    results = copy.deepcopy(crafted)
    en = [item for item in results["items"] if item["lang"] == "en" and item["both_correct"]]
    en[0]["id"], en[1]["id"], en[2]["id"] = "a::b", "a__b", "c[1]"  # "a::b" would become "a__b", which is taken
    mc_only_item(results)["id"] = "sw::demoted[x]"
    results["items"].sort(key=lambda item: (item["lang"], item["id"]))
    results["summary"] = summarize(results["items"], n_resamples=200, seed=SEED)
    source = write_results(pytester, results)
    listed = pytester.runpytest(f"--illusion-from-results={source}", "--collect-only", "-q")
    assert listed.ret == 0, listed.stdout.str()
    ids = [line for line in listed.stdout.lines if line.startswith("illusion/")]
    assert len(ids) == len(set(ids)) == 3 * n_both(results) + 9
    groups = {node_id.split("::")[0] for node_id in ids}
    assert {"illusion/en/a__b", "illusion/en/a__b-2", "illusion/en/c_1_", "illusion/sw/sw__demoted_x_"} <= groups
    result = pytester.runpytest(f"--illusion-from-results={source}", "--illusion-item-policy=fail",
                                "--junitxml=junit.xml")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*_ illusion/sw/sw__demoted_x_::produces _*",
                                 "no longer produces the gold: *; item id 'sw::demoted[[]x[]]'"])
    cases = {f"{case.get('classname')}::{case.get('name')}": case
             for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    properties = {p.get("name"): p.get("value") for p in cases["illusion.en.a__b-2::produces"].iter("property")}
    assert properties["item_id"] == "a::b"  # the id already named "a__b" keeps its name
    written = json.loads((pytester.path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))
    assert {"a::b", "a__b", "c[1]", "sw::demoted[x]"} <= {item["id"] for item in written["items"]}


def test_node_names_replace_node_id_syntax_and_stay_unique() -> None:
    from illusion_checks.pytest_plugin.items import node_names

    names = node_names(["a::b", "a__b", "x[1]", "tab\there", "a/b", "plain", "überall"])
    assert names == {"a::b": "a__b-2", "a__b": "a__b", "x[1]": "x_1_", "tab\there": "tab_here", "a/b": "a_b",
                     "plain": "plain", "überall": "überall"}
    assert node_names(["a:b", "a[b", "a_b"]) == {"a:b": "a_b-2", "a[b": "a_b-3", "a_b": "a_b"}
