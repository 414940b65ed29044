"""GitHub Actions output for a gated run: the job summary (Markdown for `$GITHUB_STEP_SUMMARY`) and one
`::error` workflow command per failed gate.

Everything here is a pure function of the results and their gates, except `append_step_summary` and
`to_github`, which write them.
GitHub renders the summary as Markdown with inline HTML, so every text that comes from the data or
a model (language codes, specs, model names, findings that quote answers) goes through `_md`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from illusion_checks.gates import Gate
from illusion_checks.pytest_plugin.terminal import PAIRED_HEADERS, paired, rate, summary_rows, sweep_rows
from illusion_checks.results import is_multi_run, primary_run, run_label, runs_of, steps_of
from illusion_checks.sweep import passed

ERROR_TITLE = "illusion-checks gate failed"
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
FATE_HEADER = ("kept", "mc_only", "produced_only", "lost")
# Entities for what HTML and the table grammar read (`|` splits a cell even inside a code span),
# backslash escapes for Markdown's own emphasis, code, link and heading marks.
_MD_ESCAPES = str.maketrans({"\\": "\\\\", "&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "`": "\\`",
                             "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "#": "\\#", "~": "\\~"})
PathLike = str | os.PathLike[str] | None


def _one_line(text: Any) -> str:
    """Newlines and other control or invisible characters as spaces: a cell or a line stays one line."""
    return "".join(ch if ch.isprintable() else " " for ch in str(text))


def _md(text: Any) -> str:
    """Untrusted text as inert Markdown on one line: no HTML, no table column, no emphasis or link."""
    return _one_line(text).translate(_MD_ESCAPES)


def _code(text: Any) -> str:
    """A code span (inert in GitHub's renderer) whose fence is longer than any backtick run inside."""
    body = _one_line(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _run_gates(run: Mapping[str, Any]) -> list[Gate]:
    """A run's own gate records (what `apply_gates` stored in it)."""
    return [Gate.from_dict(gate, f"gates[{n}]") for n, gate in enumerate(run.get("gates", []))]


def _threshold(gate: Gate) -> str:
    """'≤ 0.15', '≥ 0.6'; on ci95 the interval's conservative end is what is compared."""
    if gate.gate_on == "mcnemar":
        return f"McNemar p > {gate.threshold:g}, or a gain"
    rule = f"{'≤' if gate.direction == 'max' else '≥'} {gate.threshold:g}"
    if gate.gate_on == "ci95":
        rule += " (CI upper end)" if gate.direction == "max" else " (CI lower end)"
    return rule


def gate_table(gates: Sequence[Gate]) -> list[str]:
    """One row per gate: its value and interval as the terminal writes them, the rule and the verdict."""
    if not gates:
        return ["No gate was set (`--illusion-max-dissociation`, `--illusion-max-delta-pr`, "
                "`--illusion-min-retention`)."]
    rows = []
    for gate in gates:
        ci = "-" if gate.ci95 is None else f"[{rate(gate.ci95[0])}, {rate(gate.ci95[1])}]"
        verdict = "pass" if gate.passed else "**FAIL**"
        if gate.reason:
            verdict += f" ({_md(gate.reason)})"
        value = rate(gate.value) + (f" ({paired(gate.mcnemar.to_dict())})" if gate.mcnemar is not None else "")
        rows.append([_md(gate.name), _md(gate.lang), value, ci, _threshold(gate), verdict])
    return _table(("gate", "language", "value", "95% CI", "threshold", "verdict"), rows)


def noise_section(gates: Sequence[Gate]) -> list[str]:
    """The gates whose item count cannot detect an effect within their margin, one bullet each."""
    warnings = [warning for warning in (gate.noise_warning() for gate in gates) if warning]
    if not warnings:
        return []
    return ["", "**Decided by noise** (minimum detectable effect at 80% power above the gate's margin):", "",
            *(f"- {_md(warning)}" for warning in warnings)]


def steps_table(results: Mapping[str, Any]) -> list[str]:
    """A sweep's paired steps, per language and overall: each spec against the next less compressed one."""
    rows = [[_md(step["spec"]), _md(step["against"]), _md(lang), str(block["n"]), paired(block["ff"]),
             paired(block["mc"])]
            for step in steps_of(results)
            for lang, block in [*step["per_language"].items(), ("overall", step["overall"])]]
    if not rows:
        return []
    return ["", "### Each spec against the next less compressed one (paired items, exact McNemar)", "",
            *_table(("spec", "against", "lang", "n", *PAIRED_HEADERS), rows)]


def fates_table(run: Mapping[str, Any], gates: Sequence[Gate]) -> list[str]:
    """The terminal's rows (per language, then overall) without its gates column."""
    rows = [[_md(row[0]), *row[1:-1]] for row in summary_rows(run, list(gates))]
    return _table(("lang", "n both-correct", *FATE_HEADER, "dissociation [95% CI]", "ΔPR [95% CI]", "retention",
                   *PAIRED_HEADERS), rows)


def findings_lines(run: Mapping[str, Any]) -> list[str]:
    """The report's headline and per-language findings, built by the report's own calls."""
    from illusion_checks.report import findings, item_stats
    from illusion_checks.report.render import report_langs

    langs = report_langs(run)
    items_by_lang = item_stats.by_language(run["items"], langs)
    per_lang = [findings.language_finding(lang, run["summary"]["per_language"][lang],
                                          item_stats.mc_only_recovery(items_by_lang[lang]))
                for lang in langs]
    headline = findings.headline(run["summary"], per_lang, run["config"]["compressed"]["spec"])
    said = {f.text for f in per_lang}  # the headline repeats the worst languages' sentences: they are listed below
    return [" ".join(_md(sentence) for sentence in headline if sentence not in said), "",
            *(f"- {_md(f.text)}" for f in per_lang)]


def _compared(run: Mapping[str, Any], specs: int = 1) -> str:
    """What was compared: the two models (or the reference and how many specs), items and languages."""
    from illusion_checks.report.render import report_langs

    config, langs = run["config"], report_langs(run)
    if specs == 1:
        compressed = config["compressed"]
        spec = f", spec {_md(compressed['spec'])}" if compressed.get("spec") else ""
        other = f"**{_md(compressed['name'])}** (compressed{spec})"
    else:
        other = f"{specs} compressed specs"
    return (f"Compared **{_md(config['reference']['name'])}** (reference) with {other} on "
            f"{len(run['items'])} items in {len(langs)} languages ({', '.join(_md(lang) for lang in langs)}).")


def _verdict(results: Mapping[str, Any], gates: Sequence[Gate]) -> str:
    searched = is_multi_run(results) and results.get("search") is not None
    if not gates and not searched:
        return "no gates"
    return "PASS" if passed(results, gates) else "FAIL"


def _grid(search: Mapping[str, Any]) -> str:
    return f"{search['method']}:{search['low']:g}..{search['high']:g}"


def _sweep_verdict(cell: str) -> str:
    """sweep_rows' 'FAIL dissociation[ar] ...' with FAIL in bold and the (untrusted) gate names escaped."""
    return f"**FAIL** {_md(cell[len('FAIL '):])}" if cell.startswith("FAIL ") else _md(cell)


def search_lines(search: Mapping[str, Any]) -> list[str]:
    """The search: its grid, the levels in the order run with their verdicts, and the level chosen."""
    verdicts = {level["spec"]: level["passed"] for level in search["levels"]}
    run = ", ".join(f"{_md(spec)} ({'pass' if verdicts.get(spec) else 'FAIL'})" for spec in search["evaluated"])
    best = search.get("best")
    lines = [f"- method {_md(search['method'])}, grid {_md(_grid(search))} (step {search['step']:g})",
             f"- levels run, in order: {run}",
             f"- highest passing level: **{_md(best)}**" if best is not None
             else "- highest passing level: **none** (even the lowest level fails its gates)"]
    return lines + [f"- warning: {_md(violation)}" for violation in search.get("monotonicity_violations", [])]


def _single(results: Mapping[str, Any], gates: Sequence[Gate]) -> list[str]:
    config = results["config"]
    return [f"## illusion-checks: {_verdict(results, gates)} — {_md(config['reference']['name'])} vs "
            f"{_md(run_label(results))}", "", _compared(results), "",
            "### Gates", "", *gate_table(gates), *noise_section(gates), "",
            "### Fates per language", "", *fates_table(results, gates), "",
            "### Findings", "", *findings_lines(results)]


def _multi(results: Mapping[str, Any], gates: Sequence[Gate]) -> list[str]:
    runs, search = runs_of(results), results.get("search")
    primary, _ = primary_run(results)
    target = f"search {_md(_grid(search))}" if search is not None else f"{len(runs)} specs"
    header = ("spec", "n both-correct", *FATE_HEADER, "dissociation [95% CI]", "ΔPR [95% CI]",
              "retention [95% CI]", "gates")
    rows = [[_md(row[0]), *row[1:-1], _sweep_verdict(row[-1])] for row in sweep_rows(results)]
    lines = [f"## illusion-checks: {_verdict(results, gates)} — {_md(runs[0]['config']['reference']['name'])} "
             f"vs {target}", "", _compared(runs[0], len(runs)), "", "### Specs (overall)", "", *_table(header, rows)]
    lines += steps_table(results)
    if search is not None:
        lines += ["", "### Search", "", *search_lines(search)]
    which = "the chosen level" if search is not None and search.get("best") is not None else "the first spec"
    primary_gates = _run_gates(primary)
    return lines + ["", f"### Gates of {_md(run_label(primary))} ({which})", "", *gate_table(primary_gates),
                    *noise_section(primary_gates), "",
                    "### Fates per language", "", *fates_table(primary, primary_gates), "",
                    "### Findings", "", *findings_lines(primary)]


def step_summary(results: Mapping[str, Any], gates: Sequence[Gate], json_path: PathLike,
                 report_path: PathLike) -> str:
    """The job summary's Markdown: the verdict, the gates, the fates, the findings and where the outputs are."""
    lines = _multi(results, gates) if is_multi_run(results) else _single(results, gates)
    outputs = [f"- {what}: {_code(os.fspath(path))}"
               for what, path in (("HTML report", report_path), ("results JSON", json_path)) if path is not None]
    if outputs:
        lines += ["", "### Outputs", "", *outputs]
    return "\n".join(lines) + "\n"


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does (`escapeData`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (`escapeProperty`): also `:` and `,`, which end a property."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def error_line(message: str, title: str = ERROR_TITLE) -> str:
    """The `::error` workflow command GitHub shows as an annotation on the run."""
    return f"::error title={escape_property(title)}::{escape_data(message)}"


def failure_summary(message: str) -> str:
    """The job summary of a run whose evaluation could not finish (no results, no gates)."""
    return f"## illusion-checks: ERROR — the evaluation could not finish\n\n{_md(message)}\n"


def annotations(results: Mapping[str, Any], gates: Sequence[Gate]) -> list[str]:
    """One `::error` line per failed gate (named by its spec in a sweep). A search's failing levels are
    its point: it errs once, and only when no level passes."""
    if not is_multi_run(results):
        return [error_line(gate.describe()) for gate in gates if not gate.passed]
    search = results.get("search")
    if search is not None:
        if search.get("best") is not None:
            return []
        return [error_line(f"search {_grid(search)}: no level passes its gates "
                       f"(levels run: {', '.join(search['evaluated'])})")]
    return [error_line(f"{run_label(run)}: {gate.describe()}")
            for run in runs_of(results) for gate in _run_gates(run) if not gate.passed]


def append_step_summary(path: str | os.PathLike[str], markdown: str) -> None:
    """Append to the job summary file (steps share it; it may not exist yet); a failure is one ValueError line."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown)
    except OSError as error:
        raise ValueError(f"{SUMMARY_ENV}={os.fspath(path)!r}: cannot append the job summary: "
                         f"{_one_line(error.strerror or error)}") from error


def to_github(errors: list[str], markdown: Callable[[], str], write_line: Callable[[str], None]) -> None:
    """On GitHub Actions, write the `::error` lines on stdout (GitHub turns them into annotations); with
    $GITHUB_STEP_SUMMARY set, append the Markdown there. A summary that cannot be written is a warning line."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in errors:
            write_line(line)
    path = os.environ.get(SUMMARY_ENV)
    if path:
        try:
            append_step_summary(path, markdown())
        except ValueError as error:  # the gates decide the exit status, not the summary file
            write_line(f"illusion-checks: warning: {error}")
