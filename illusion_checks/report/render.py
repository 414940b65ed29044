"""`make_report` / `write_report`: a results JSON in, one self-contained HTML page out."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from illusion_checks import __version__
from illusion_checks.atomic import write_text_atomic
from illusion_checks.gates import Gate
from illusion_checks.power import UNITS, Power
from illusion_checks.ranks import RANK_INTERPRETABLE_SHARE
from illusion_checks.records import SCHEMA
import illusion_checks.report.explorer as explorer
import illusion_checks.report.figures as figures
import illusion_checks.report.findings as findings
import illusion_checks.report.item_stats as item_stats
import illusion_checks.report.sweep as sweep_mod
from illusion_checks.report.formats import interval, pct, spec_value

_REQUIRED = ("schema", "config", "items", "summary", "gates")
FATE_CHOICES = (("kept", "kept"), ("mc_only", "MC-only"), ("produced_only", "produced-only"),
                ("lost", "lost"), ("none", "not both-correct"))


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("illusion_checks", "report"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


@functools.cache
def _asset(name: str, closing_tag: str) -> Markup:
    """A package CSS/JS file, trusted, inlined verbatim; it must not close its own element."""
    text = resources.files("illusion_checks.report").joinpath(name).read_text("utf-8")
    assert closing_tag not in text.lower(), f"{name} contains {closing_tag}"
    return Markup(text)


def content_security_policy(script: str) -> str:
    """Nothing may load or connect; only our one inline script (by hash) runs."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def check_results(results: Mapping[str, Any], name: str = "results") -> None:
    """Raise ValueError naming the field when `results` is not a v1 results dict."""
    if not isinstance(results, Mapping):
        raise ValueError(f"{name}: expected a JSON object, got {type(results).__name__}")
    missing = [k for k in _REQUIRED if k not in results]
    if missing:
        raise ValueError(f"{name}: missing field {missing[0]!r}")
    if results["schema"] != SCHEMA:
        raise ValueError(f"{name}: schema is {results['schema']!r}, expected {SCHEMA!r}")
    notes = results.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, Mapping) and isinstance(n.get("message"), str)
                                              for n in notes):
        raise ValueError(f"{name}: field 'notes' must be a list of objects with a 'message' string")


def report_langs(results: Mapping[str, Any]) -> list[str]:
    """Languages in the dataset's order, then any others the summary holds, sorted."""
    per = results["summary"]["per_language"]
    declared = [lang for lang in results["config"]["dataset"]["langs"] if lang in per]
    return declared + sorted(set(per) - set(declared))


def _detectable(name: str, power: Power | None) -> str:
    """A gate's minimum detectable effect at 80% power, and the items it counts: `36.7% (20 both-correct items)`."""
    if power is None:
        return "n/a"
    effect = "none" if power.mde is None else spec_value(power.mde, name)
    return f"{'loss ' if name == 'retention' else ''}{effect} ({power.n} {UNITS[name]})"


def gate_rows(gates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each gate's verdict with its numbers in the metric's format, its minimum detectable effect and,
    when that exceeds the gate's margin, the warning that noise decides it."""
    rows = []
    for n, g in enumerate(gates):
        gate = Gate.from_dict(g, f"gates[{n}]")
        fmt = functools.partial(spec_value, name=gate.name)
        test = gate.mcnemar
        rows.append({"name": gate.name, "lang": gate.lang, "value": fmt(gate.value), "ci": interval(gate.ci95, fmt),
                     "compared": fmt(gate.compared) if test is None else f"p = {test.p_value:.2g}",
                     "rule": (f"{'≤' if gate.direction == 'max' else '≥'} {fmt(gate.threshold)}" if test is None
                              else f"p > {gate.threshold:g}, or a gain"),
                     "gate_on": gate.gate_on, "passed": gate.passed,
                     "detectable": _detectable(gate.name, gate.power), "warning": gate.noise_warning()})
    return rows


def mcnemar_rows(summary: Mapping[str, Any], langs: Sequence[str]) -> list[dict[str, Any]]:
    """McNemar's exact test per language and overall, FF and MC (absent in results written before it)."""
    blocks = [(lang, summary["per_language"][lang]) for lang in langs] + [("overall", summary["overall"])]
    return [{"lang": lang, "cells": [{"metric": f"mcnemar.{probe}.{key}", "text": _test_text(block["mcnemar"][probe], key)}
                                     for probe in ("ff", "mc") for key in ("drops", "gains", "p_value")]}
            for lang, block in blocks if isinstance(block.get("mcnemar"), Mapping)]


def noise_floor_rows(results: Mapping[str, Any], langs: Sequence[str]) -> list[dict[str, str]]:
    """The A/A noise floor beside the run's dissociation, per language and overall (none when the
    run did not measure it: `--illusion-noise-floor`)."""
    floor = results.get("noise_floor")
    if not floor:
        return []
    summary = results["summary"]
    rows = []
    for lang, block, stats in [*((lang, floor["per_language"].get(lang), summary["per_language"][lang]) for lang in langs),
                               ("overall", floor, summary["overall"])]:
        if block is None:
            continue
        dissociation = stats.get("dissociation_rate")
        ci = stats.get("dissociation_ci95")
        rows.append({"lang": lang, "dissociation": pct(dissociation) + ("" if ci is None else f" {interval(ci)}"),
                     "changed": f"{block['changed']} of {block['n']}",
                     "rate": "n/a" if block["rate"] is None else pct(block["rate"]),
                     "outputs": f"{block['outputs_changed']} of {block['items']}"})
    return rows


def _test_text(test: Mapping[str, Any], key: str) -> str:
    return f"{test[key]:.2g}" if key == "p_value" else str(test[key])


def note_rows(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """The run's notes (absent in older results) as kind and message, in the order written."""
    return [{"kind": str(n.get("kind", "")), "message": n["message"]} for n in results.get("notes", [])]


CAPABILITY_KINDS = ("exact", "approximate", "unavailable")


def _capability_kind(how: str) -> str:
    """'exact', 'approximate' or 'unavailable' from how a probe was measured; 'other' otherwise."""
    return next((kind for kind in CAPABILITY_KINDS if how.startswith(kind)), "other")


def served_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each served model (`config.<role>.server`): where it was read and, probe by probe, whether
    it was measured exactly, approximately or not at all. All of it is untrusted text."""
    rows = []
    for role in ("reference", "compressed"):
        block = config.get(role)
        server = block.get("server") if isinstance(block, Mapping) else None
        if not isinstance(server, Mapping):
            continue
        caps = server.get("capabilities")
        caps = caps if isinstance(caps, Mapping) else {}
        rows.append({"role": role, "url": str(server.get("url") or ""), "model": str(server.get("model") or ""),
                     "version": str(server.get("version") or "version unknown"),
                     "capabilities": [{"probe": str(probe), "how": str(how), "kind": _capability_kind(str(how))}
                                      for probe, how in caps.items()]})
    return rows


def _verdict(gates: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    if not gates:
        return "none", "no gates configured"
    failed = sum(not g["passed"] for g in gates)
    if failed:
        return "fail", f"FAIL: {failed} of {len(gates)} gates failed"
    return "pass", f"PASS: all {len(gates)} gates passed"


def make_report(results: Mapping[str, Any], sweep: Sequence[Mapping[str, Any]] = (),
                search: Mapping[str, Any] | None = None) -> str:
    """Render the fate report for `results` (and a spec comparison with `sweep`, and the search that
    chose among them) as one HTML page."""
    check_results(results)
    for i, other in enumerate(sweep):
        check_results(other, f"sweep[{i}]")
    langs = report_langs(results)
    items_by_lang = item_stats.by_language(results["items"], langs)
    per_lang = [findings.language_finding(lang, results["summary"]["per_language"][lang],
                                          item_stats.mc_only_recovery(items_by_lang[lang]))
                for lang in langs]
    config = results["config"]
    script = _asset("report.js", "</script")
    verdict_class, verdict_text = _verdict(results["gates"])
    return _env().get_template("report.html.j2").render(
        config=config,
        langs=langs,
        n_items=len(results["items"]),
        gates=gate_rows(results["gates"]),
        mcnemar=mcnemar_rows(results["summary"], langs),
        noise_floor=noise_floor_rows(results, langs),
        noise_floor_run=results.get("noise_floor"),
        verdict_class=verdict_class,
        verdict_text=verdict_text,
        notes=note_rows(results),
        served=served_rows(config),
        headline=findings.headline(results["summary"], per_lang, config["compressed"]["spec"]),
        findings=per_lang,
        fig=figures.all_figures(results, langs),
        rank_share=pct(RANK_INTERPRETABLE_SHARE),
        sweep=sweep_mod.sweep_section(results, sweep, search),
        search=search,
        fate_choices=FATE_CHOICES,
        items_json=explorer.script_json(explorer.explorer_data(results["items"])),
        css=_asset("report.css", "</style"),
        js=script,
        csp=content_security_policy(str(script)),
        renderer_version=__version__,
    )


def write_report(path: str | os.PathLike[str], results: Mapping[str, Any],
                 sweep: Sequence[Mapping[str, Any]] = (), search: Mapping[str, Any] | None = None) -> None:
    """Render and write atomically (`atomic.write_text_atomic`)."""
    write_text_atomic(path, make_report(results, sweep, search))
