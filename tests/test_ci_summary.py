"""The GitHub Actions job summary and error annotations, on results built by the real code (synthetic
items, `summarize`, `apply_gates`, the search's own bisection): verdicts, numbers, fates, findings,
paths, escaping of untrusted text, and appending to $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

import pytest

from illusion_checks.api import apply_gates
from illusion_checks.gates import Gate
from illusion_checks.pytest_plugin.ci_summary import (
    annotations,
    append_step_summary,
    escape_data,
    escape_property,
    step_summary,
)
from illusion_checks.report import findings, item_stats
from illusion_checks.results import multi_results
from illusion_checks.search import bisect, parse_search
from illusion_checks.spec import GateSpec
from tests.helpers.synth import make_results

LANGS = ("ar", "en", "sw")
HOSTILE = "<script>|x</script>"
JSON, REPORT = "reports/out.json", "reports/out.html"


@functools.cache
def _base(langs: tuple[str, ...] = LANGS, spec: str = "wanda:0.5", severity: float = 1.0) -> dict[str, Any]:
    return make_results(langs, 40, n_resamples=20, spec=spec, severity=severity, gates=False)


def gated(gates: GateSpec, **kwargs: Any) -> tuple[dict[str, Any], list[Gate]]:
    results = copy.deepcopy(_base(**kwargs))
    return results, apply_gates(results, gates)


def table(markdown: str, first_header: str) -> list[list[str]]:
    """The body rows of the table whose header starts with `first_header`, split into cells."""
    lines = markdown.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"| {first_header} |")))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_gate_table_shows_each_gate_its_numbers_rule_and_verdict() -> None:
    results, gates = gated(GateSpec(max_dissociation=0.15, min_retention=0.6))
    assert {gate.passed for gate in gates} == {True, False}  # a passing and a failing threshold, same results
    rows = table(step_summary(results, gates, JSON, REPORT), "gate")
    assert len(rows) == len(gates)
    for row, gate in zip(rows, gates):
        rule = "≤ 0.15" if gate.name == "dissociation" else "≥ 0.6"
        assert row == [gate.name, gate.lang, f"{gate.value:.2f}", f"[{gate.ci95[0]:.2f}, {gate.ci95[1]:.2f}]",
                       rule, "pass" if gate.passed else "**FAIL**"]


def test_the_heading_verdict_follows_the_thresholds() -> None:
    easy, easy_gates = gated(GateSpec(max_dissociation=1.0))
    strict, strict_gates = gated(GateSpec(max_dissociation=0.0, gate_on="ci95"))
    none, no_gates = gated(GateSpec())
    assert step_summary(easy, easy_gates, JSON, REPORT).startswith(
        "## illusion-checks: PASS — gemma3-270m vs wanda:0.5\n")
    assert step_summary(strict, strict_gates, JSON, REPORT).startswith("## illusion-checks: FAIL — ")
    assert "≤ 0 (CI upper end)" in step_summary(strict, strict_gates, JSON, REPORT)
    assert step_summary(none, no_gates, JSON, REPORT).startswith("## illusion-checks: no gates — ")
    assert annotations(easy, easy_gates) == [] and annotations(none, no_gates) == []


def test_an_undefined_gate_fails_and_shows_its_reason() -> None:
    results, gates = gated(GateSpec(max_dissociation={"xx": 0.2}))
    undefined = next(gate for gate in gates if gate.lang == "xx")
    row = next(row for row in table(step_summary(results, gates, JSON, REPORT), "gate") if row[1] == "xx")
    assert undefined.reason and row[2] == "-" and row[5].startswith("**FAIL** (") and "xx" in row[5]


def test_the_fates_table_holds_the_summary_counts_and_the_outputs_their_paths() -> None:
    results, gates = gated(GateSpec(max_dissociation=0.15))
    markdown = step_summary(results, gates, JSON, REPORT)
    rows = {row[0]: row for row in table(markdown, "lang")}
    summary = results["summary"]
    assert list(rows) == [*sorted(summary["per_language"]), "overall"]
    for lang, row in rows.items():
        block = summary["overall"] if lang == "overall" else summary["per_language"][lang]
        fates = block["fates"]
        assert row[1:6] == [str(block["n_both_correct"]), *(str(fates[f]) for f in
                                                             ("kept", "mc_only", "produced_only", "lost"))]
    assert f"- HTML report: `{REPORT}`" in markdown and f"- results JSON: `{JSON}`" in markdown
    assert "(compressed, spec wanda:0.5) on 120 items in 3 languages (ar, en, sw)" in markdown


def test_the_findings_are_the_reports_sentences() -> None:
    results, gates = gated(GateSpec(max_dissociation=0.15))
    markdown = step_summary(results, gates, JSON, REPORT)
    by_lang = item_stats.by_language(results["items"], list(LANGS))
    per_lang = [findings.language_finding(lang, results["summary"]["per_language"][lang],
                                          item_stats.mc_only_recovery(by_lang[lang])) for lang in LANGS]
    assert markdown.count("MC-only") >= len(LANGS)
    for finding in per_lang:
        assert f"- {finding.text}" in markdown
    assert findings.headline(results["summary"], per_lang, "wanda:0.5")[0] in markdown


def tables(markdown: str) -> list[list[str]]:
    """Each table's lines (runs of lines starting with `|`)."""
    groups: list[list[str]] = [[]]
    for line in markdown.splitlines():
        if line.startswith("|"):
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
    return [group for group in groups if group]


def test_a_hostile_language_and_spec_are_escaped() -> None:
    results, gates = gated(GateSpec(max_dissociation=0.15), langs=("en", HOSTILE), spec=f"wanda:0.5{HOSTILE}")
    markdown = step_summary(results, gates, JSON, REPORT)
    assert "<script>" not in markdown and "&lt;script&gt;&#124;x&lt;/script&gt;" in markdown
    assert len(tables(markdown)) == 2
    for lines in tables(markdown):  # no cell added a column
        assert len({line.count("|") for line in lines}) == 1
    assert [row[1] for row in table(markdown, "gate")][0] == "&lt;script&gt;&#124;x&lt;/script&gt;"
    hostile = dataclasses.replace(next(gate for gate in gates if not gate.passed), lang="a\nb%c")
    assert annotations(results, [hostile]) == [
        "::error title=illusion-checks gate failed::" + hostile.describe().replace("%", "%25").replace("\n", "%0A")]
    assert "\n" not in annotations(results, [hostile])[0] and "a%0Ab%25c" in annotations(results, [hostile])[0]


def test_markdown_in_untrusted_text_is_inert() -> None:
    results, gates = gated(GateSpec(max_dissociation=0.15), langs=("en", "a*b_c`d[e](f)\\g#h\ri&j"))
    markdown = step_summary(results, gates, JSON, REPORT)
    assert "a\\*b\\_c\\`d\\[e\\](f)\\\\g\\#h i&amp;j" in markdown and "\r" not in markdown


def test_workflow_command_escapes() -> None:
    assert escape_data("50% a:b,c\r\nnext") == "50%25 a:b,c%0D%0Anext"
    assert escape_property("50% a:b,c\r\nnext") == "50%25 a%3Ab%2Cc%0D%0Anext"


def _sweep() -> tuple[dict[str, Any], list[Gate]]:
    runs = [copy.deepcopy(_base(spec=spec, severity=severity))
            for spec, severity in (("wanda:0.3", 0.3), (f"wanda:0.6{HOSTILE}", 1.5))]
    results = multi_results(runs)
    return results, apply_gates(results, GateSpec(max_dissociation={"overall": 0.3}))


def test_a_sweep_has_one_row_per_spec_and_errors_named_by_spec() -> None:
    results, gates = _sweep()
    markdown = step_summary(results, gates, JSON, REPORT)
    rows = table(markdown, "spec")
    assert [row[0] for row in rows] == ["wanda:0.3", "wanda:0.6&lt;script&gt;&#124;x&lt;/script&gt;"]
    assert rows[0][-1] == "pass" and rows[1][-1] == "**FAIL** dissociation\\[overall\\]"
    assert markdown.startswith("## illusion-checks: FAIL — gemma3-270m vs 2 specs\n")
    assert "### Gates of wanda:0.3 (the first spec)" in markdown and "<script>" not in markdown
    errors = annotations(results, gates)
    assert len(errors) == 1 and errors[0].startswith(
        f"::error title=illusion-checks gate failed::wanda:0.6{HOSTILE}: dissociation[overall] = ")


def _search(threshold: float) -> tuple[dict[str, Any], list[Gate]]:
    """What `run_search` does, with synthetic runs whose damage grows with the level."""
    space, gate_spec, runs = parse_search("wanda:0.3..0.8"), GateSpec(max_dissociation={"overall": threshold}), {}

    def passes(spec: str) -> bool:
        run = copy.deepcopy(_base(spec=spec, severity=2 * float(spec.split(":")[1])))
        runs[spec] = run
        return all(gate.passed for gate in apply_gates(run, gate_spec))

    found = bisect(space, passes)
    ordered = [runs[space.spec(level)] for level in space.levels() if space.spec(level) in runs]
    results = multi_results(ordered, search=found.to_dict())
    return results, apply_gates(results, gate_spec)


def test_a_search_shows_its_levels_and_the_chosen_one_and_does_not_err() -> None:
    results, gates = _search(0.3)
    best = results["search"]["best"]
    assert best is not None and not all(gate.passed for gate in gates)  # some levels fail: expected
    markdown = step_summary(results, gates, JSON, REPORT)
    assert markdown.startswith("## illusion-checks: PASS — gemma3-270m vs search wanda:0.3..0.8\n")
    assert f"- highest passing level: **{best}**" in markdown
    assert f"### Gates of {best} (the chosen level)" in markdown
    assert [row[0].removesuffix(" (chosen)") for row in table(markdown, "spec")] == \
        [level["spec"] for level in results["search"]["levels"]]
    verdicts = {level["spec"]: "pass" if level["passed"] else "FAIL" for level in results["search"]["levels"]}
    order = ", ".join(f"{spec} ({verdicts[spec]})" for spec in results["search"]["evaluated"])
    assert f"- levels run, in order: {order}" in markdown
    assert annotations(results, gates) == []


def test_a_search_without_a_passing_level_errs_once() -> None:
    results, gates = _search(0.01)
    markdown = step_summary(results, gates, JSON, REPORT)
    assert results["search"]["best"] is None and markdown.startswith("## illusion-checks: FAIL — ")
    assert "- highest passing level: **none** (even the lowest level fails its gates)" in markdown
    assert "(the first spec)" in markdown
    errors = annotations(results, gates)
    assert len(errors) == 1 and re.fullmatch(
        r"::error title=illusion-checks gate failed::search wanda:0\.3\.\.0\.8: no level passes its gates "
        r"\(levels run: wanda:0\.\d+(, wanda:0\.\d+)*\)", errors[0])


def test_append_step_summary_appends_and_a_bad_path_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    append_step_summary(path, "first\n")
    append_step_summary(path, "second ✓\n")
    assert path.read_text(encoding="utf-8") == "first\nsecond ✓\n"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError) as caught:
        append_step_summary(blocker / "summary.md", "text")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"GITHUB_STEP_SUMMARY={str(blocker / 'summary.md')!r}: ")


def test_gates_decided_by_noise_and_the_paired_tests_are_in_the_summary() -> None:
    results, gates = gated(GateSpec(max_dissociation=0.15), langs=("en", HOSTILE))
    markdown = step_summary(results, gates, JSON, REPORT)
    noisy = [gate.noise_warning() for gate in gates if gate.noise_warning()]
    assert noisy and "**Decided by noise**" in markdown  # 40 items per language cannot resolve 0.15
    assert "- en: " in markdown and "the 0.15 gate is decided by noise; about 52 both-correct items would" in markdown
    assert "<script>" not in markdown and "- &lt;script&gt;&#124;x&lt;/script&gt;: " in markdown
    rows = {row[0]: row for row in table(markdown, "lang")}
    tests = results["summary"]["per_language"]["en"]["mcnemar"]
    assert rows["en"][-2:] == [f"{tests[p]['drops']}/{tests[p]['gains']} p={tests[p]['p_value']:.2g}" for p in ("ff", "mc")]
    mcnemar, mcnemar_gates = gated(GateSpec(gate_on="mcnemar"))
    row = table(step_summary(mcnemar, mcnemar_gates, JSON, REPORT), "gate")[0]
    assert row[0] == "ff\\_drop" and row[4] == "McNemar p > 0.05, or a gain" and "p=" in row[2]


def test_a_sweep_lists_each_spec_against_the_next_less_compressed_one() -> None:
    runs = [copy.deepcopy(_base(spec=spec, severity=severity)) for spec, severity in (("wanda:0.3", 0.3),
                                                                                    ("wanda:0.6", 1.5))]
    results = multi_results(runs)
    markdown = step_summary(results, apply_gates(results, GateSpec(max_dissociation=0.3)), JSON, REPORT)
    assert "### Each spec against the next less compressed one (paired items, exact McNemar)" in markdown
    rows = table(markdown, "spec | against")
    assert [row[:3] for row in rows] == [["wanda:0.6", "wanda:0.3", lang] for lang in (*LANGS, "overall")]
    overall = results["steps"][0]["overall"]
    assert rows[-1][3:] == [str(overall["n"]), *(f"{overall[p]['drops']}/{overall[p]['gains']} "
                                                 f"p={overall[p]['p_value']:.2g}" for p in ("ff", "mc"))]
    hostile, _ = _sweep()  # a spec that is no pruning level has no step, and no table
    assert "next less compressed" not in step_summary(hostile, [], JSON, REPORT)
