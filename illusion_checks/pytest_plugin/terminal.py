"""The terminal summary: one rich table of fates, rates, McNemar's paired tests and gate verdicts per
language, then the gates, the gates an item count too small decides by noise, the run's notes and
the languages whose gold rank is not interpretable; for a sweep, a row per spec and its paired steps."""

from __future__ import annotations

import io
from typing import Any, Mapping

from illusion_checks.fates import FATE_ORDER
from illusion_checks.gates import Gate
from illusion_checks.noise_floor import describe as describe_noise_floor
from illusion_checks.ranks import RANK_INTERPRETABLE_SHARE
from illusion_checks.results import run_label, runs_of, steps_of
from illusion_checks.significance import DEFAULT_ALPHA, McNemar

TABLE_MAX_WIDTH = 1000  # the table is not expanded, so it takes its natural width up to this


def rate(value: float | None, ci: list[float] | None = None) -> str:
    """`0.76 [0.57, 0.94]`, `0.76`, or `-` for an undefined rate: as the terminal and the job summary write it."""
    if value is None:
        return "-"
    text = f"{value:.2f}"
    return f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else text


def paired(block: Mapping[str, Any] | None) -> str:
    """`9/1 p=0.021`: the items right only before / only after compression, and McNemar's exact p;
    `-` where the results hold no test."""
    if block is None:
        return "-"
    return f"{block['drops']}/{block['gains']} p={block['p_value']:.2g}"


PAIRED_HEADERS = ("FF drops/gains (McNemar)", "MC drops/gains (McNemar)")


def _paired_cells(block: Mapping[str, Any]) -> list[str]:
    tests = block.get("mcnemar") or {}
    return [paired(tests.get("ff")), paired(tests.get("mc"))]


def _verdicts(gates: list[Gate], lang: str) -> str:
    mine = [g for g in gates if g.lang == lang]
    if not mine:
        return "-"
    return " ".join(f"{g.name}:{'pass' if g.passed else 'FAIL'}" for g in mine)


def summary_rows(results: Mapping[str, Any], gates: list[Gate]) -> list[list[str]]:
    """Rows of the table: per language, then overall."""
    summary = results["summary"]
    rows = []
    for lang in [*sorted(summary["per_language"]), "overall"]:
        block = summary["overall"] if lang == "overall" else summary["per_language"][lang]
        rows.append([
            lang, str(block["n_both_correct"]), *(str(block["fates"][fate.value]) for fate in FATE_ORDER),
            rate(block["dissociation_rate"], block["dissociation_ci95"]),
            rate(block["delta_pr"], block["delta_pr_ci95"]), rate(block["retention"]), *_paired_cells(block),
            _verdicts(gates, lang),
        ])
    return rows


def _printable(text: Any) -> str:
    """Untrusted text (a note names files; a language code comes from the data) kept to one line
    that cannot drive the terminal: control and other non-printing characters are escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


def _answer_start(block: Mapping[str, Any]) -> str:
    """'reference 23% of 43, compressed 21% of 28': each model's FF-correct answers that begin with the gold."""
    parts = []
    for model in ("reference", "compressed"):
        counts = block["answer_start"][model]
        if counts["n_ff_correct"]:
            parts.append(f"{model} {counts['share']:.0%} of {counts['n_ff_correct']}")
        else:
            parts.append(f"{model}: no correct answer")
    return ", ".join(parts)


def note_lines(results: Mapping[str, Any]) -> list[str]:
    """One line per note of the run (absent in older results), then one naming the languages whose
    gold rank is not interpretable, if any."""
    lines = [f"illusion-checks: note: {_printable(note['message'])}" for note in results.get("notes", [])]
    per = results["summary"]["per_language"]
    withheld = [lang for lang in sorted(per) if per[lang].get("rank_interpretable") is False]
    if withheld:
        lines.append(f"illusion-checks: gold rank not interpretable (under {RANK_INTERPRETABLE_SHARE:.0%} of "
                     "correct FF answers begin with the gold where the answer starts) for: "
                     + "; ".join(f"{_printable(lang)} ({_answer_start(per[lang])})" for lang in withheld))
    return lines


def summary_table(reporter: Any, results: Mapping[str, Any], gates: list[Gate]) -> None:
    """Write the table, the gate verdicts and the notes through pytest's terminal writer (so they
    land in pytest's output stream)."""
    from rich.table import Table

    config = results["config"]
    title = (f"illusion-checks: {config['reference']['name']} vs {config['compressed']['name']} "
             "(n = reference-both-correct items)")
    table = Table(title=title, title_justify="left")
    for header in ("lang", "n", "kept", "mc_only", "prod_only", "lost",
                   "dissociation [95% CI]", "ΔPR [95% CI]", "retention", *PAIRED_HEADERS, "gates"):
        table.add_column(header, justify="left" if header in ("lang", "gates") else "right", no_wrap=True)
    for row in summary_rows(results, gates):
        table.add_row(*row)
    _print_table(reporter, table)
    for gate in gates:
        reporter.write_line(("PASS " if gate.passed else "FAIL ") + gate.describe())
    for line in noise_lines(gates):
        reporter.write_line(line)
    floor = describe_noise_floor(results.get("noise_floor"))
    if floor:
        reporter.write_line(f"illusion-checks: {floor}")
    for line in note_lines(results):
        reporter.write_line(line)


def noise_lines(gates: list[Gate]) -> list[str]:
    """A warning per gate whose minimum detectable effect exceeds its margin (the item count cannot
    tell a model at the threshold from a clean one)."""
    return [f"illusion-checks: warning: {_printable(warning)}"
            for warning in (gate.noise_warning() for gate in gates) if warning]


def _print_table(reporter: Any, table: Any, separator: str | None = "illusion-checks summary") -> None:
    from rich.console import Console

    buffer = io.StringIO()
    # As wide as the table needs, whatever the terminal: rich would otherwise cut cells to "…",
    # and a truncated number or verdict is worse than a long line (CI logs are not terminals).
    console = Console(file=buffer, width=TABLE_MAX_WIDTH, force_terminal=reporter.hasmarkup,
                      color_system="standard" if reporter.hasmarkup else None)
    console.print(table)
    if separator is not None:
        reporter.write_sep("=", separator)
    reporter.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


def sweep_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """Rows of the sweep table: per spec, its overall fates, rates with their 95% intervals, and gates."""
    from illusion_checks.gates import Gate as GateRecord

    best = (results.get("search") or {}).get("best")
    rows = []
    for run in runs_of(results):
        block, gates = run["summary"]["overall"], [GateRecord.from_dict(g) for g in run["gates"]]
        verdict = "-" if not gates else "pass" if all(g.passed for g in gates) else \
            "FAIL " + " ".join(f"{g.name}[{g.lang}]" for g in gates if not g.passed)
        label = run_label(run) + (" (chosen)" if run_label(run) == best else "")
        rows.append([_printable(label), str(block["n_both_correct"]),
                     *(str(block["fates"][fate.value]) for fate in FATE_ORDER),
                     rate(block["dissociation_rate"], block["dissociation_ci95"]),
                     rate(block["delta_pr"], block["delta_pr_ci95"]),
                     rate(block["retention"], block.get("retention_ci95")), verdict])
    return rows


def step_rows(results: Mapping[str, Any], alpha: float) -> list[list[str]]:
    """A row per paired step (a spec against the next less compressed one of its method), overall, with
    the languages whose FF drop is significant at alpha."""
    rows = []
    for step in steps_of(results):
        overall = step["overall"]
        flagged = [lang for lang, block in step["per_language"].items() if McNemar(**block["ff"]).significant_drop(alpha)]
        rows.append([_printable(f"{step['against']} -> {step['spec']}"), str(overall["n"]), paired(overall["ff"]),
                     paired(overall["mc"]), _printable(", ".join(flagged) or "none")])
    return rows


def _steps_table(reporter: Any, results: Mapping[str, Any], alpha: float) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows = step_rows(results, alpha)
    if not rows:
        return
    table = Table(title="illusion-checks: each spec against the next less compressed one (paired items, exact "
                        f"McNemar; overall, and the languages whose FF drop is significant at {alpha:g})",
                  title_justify="left")
    for header in ("step", "n", *PAIRED_HEADERS, "significant FF drop"):
        table.add_column(header, justify="right" if header == "n" else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    _print_table(reporter, table, separator=None)


def sweep_table(reporter: Any, results: Mapping[str, Any], alpha: float = DEFAULT_ALPHA) -> None:
    """One table for a sweep or search: a row per spec (overall), then its paired steps, the search's
    verdict and each spec's gates decided by noise."""
    from rich.table import Table

    first = runs_of(results)[0]["config"]
    table = Table(title=f"illusion-checks: {first['reference']['name']}, one row per compression spec "
                        "(overall; n = reference-both-correct items)", title_justify="left")
    for header in ("spec", "n", "kept", "mc_only", "prod_only", "lost", "dissociation [95% CI]", "ΔPR [95% CI]",
                   "retention [95% CI]", "gates"):
        table.add_column(header, justify="left" if header in ("spec", "gates") else "right", no_wrap=True)
    from rich.markup import escape

    for row in sweep_rows(results):
        table.add_row(*(escape(cell) for cell in row))  # "[en]" is text, not rich markup
    _print_table(reporter, table)
    _steps_table(reporter, results, alpha)
    search = results.get("search")
    if search is not None:
        best = search.get("best")
        reporter.write_line(f"illusion-checks: search {search['method']}:{search['low']:g}..{search['high']:g} "
                            f"(step {search['step']:g}): levels run {', '.join(search['evaluated'])}; "
                            f"highest passing level: {best or 'none, even the lowest fails'}")
        for violation in search.get("monotonicity_violations", []):
            reporter.write_line(f"illusion-checks: warning: {violation}")
    # Every spec counts the reference's items, so its gates resolve what the others' do: said once.
    for line in dict.fromkeys(line for run in runs_of(results) for line in noise_lines([Gate.from_dict(g)
                                                                                       for g in run["gates"]])):
        reporter.write_line(line)
    for line in dict.fromkeys(line for run in runs_of(results) for line in note_lines(run)):
        reporter.write_line(f"{line}")
