"""Side-by-side comparison of several compression specs of one reference on one dataset."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import illusion_checks.report.svg as svg
from illusion_checks.report.charts import IntervalRow, interval_rows
from illusion_checks.report.formats import interval, pct, signed
from illusion_checks.results import steps_among

Results = Mapping[str, Any]


def _natural_key(spec: str) -> list[Any]:
    """'wanda:0.5' sorts before 'wanda:0.7' and 'int4' before 'int8'."""
    return [float(p) if re.fullmatch(r"\d+(\.\d+)?", p) else p
            for p in re.split(r"(\d+(?:\.\d+)?)", spec) if p]


def check_sweep(results: Results, sweep: Sequence[Results]) -> None:
    """Raise ValueError unless every sweep file shares the reference and dataset of `results`."""
    ref = results["config"]["reference"]["name"]
    dataset = results["config"]["dataset"]
    for i, other in enumerate(sweep):
        config = other["config"]
        if config["reference"]["name"] != ref:
            raise ValueError(f"sweep[{i}]: config.reference.name is {config['reference']['name']!r}, "
                             f"but this run's reference is {ref!r}")
        for key in ("name", "sha256"):
            if config["dataset"][key] != dataset[key]:
                raise ValueError(f"sweep[{i}]: config.dataset.{key} is {config['dataset'][key]!r}, "
                                 f"but this run's is {dataset[key]!r}")


def _labels(runs: Sequence[Results]) -> list[str]:
    """The spec of each run, with its calibration when two runs share a spec."""
    keys = [(r["config"]["compressed"]["spec"], r["config"]["compressed"]["calibration"]) for r in runs]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"sweep: config.compressed.spec {key[0]!r} with calibration {key[1]!r} "
                             "appears more than once")
    specs = [spec for spec, _ in keys]
    return [f"{spec} ({cal})" if specs.count(spec) > 1 else spec for spec, cal in keys]


METRICS = (("dissociation_rate", "dissociation_ci95", "Dissociation rate", pct),
           ("delta_pr", "delta_pr_ci95", "ΔPR", signed),
           ("retention", "retention_ci95", "Retention", pct))
# The compressed model's accuracy per probe. The summary holds no interval for accuracy, so these
# charts show point values only (and say so); no interval is made up.
ACCURACY = (("ff", "FF accuracy"), ("mc", "MC accuracy"))
NO_INTERVAL = "Point values only: the results hold no 95% interval for accuracy."


def _gates_passed(gates: Sequence[Mapping[str, Any]]) -> bool | None:
    """Whether every gate passed; None when the run has no gates."""
    return all(bool(g["passed"]) for g in gates) if gates else None


def _rows(runs: Sequence[Results], labels: Sequence[str], order: Sequence[int],
          best: str | None) -> list[dict[str, Any]]:
    """One table row per run, in spec order."""
    rows = []
    for i in order:
        run, overall = runs[i], runs[i]["summary"]["overall"]
        gates = run["gates"]
        rows.append({
            "spec": labels[i], "current": i == 0,
            "chosen": best is not None and run["config"]["compressed"]["spec"] == best,
            "calibration": run["config"]["compressed"]["calibration"],
            "n_both_correct": overall["n_both_correct"],
            "cells": [{"metric": key, "text": fmt(overall[key]), "ci": interval(overall[ci], fmt)}
                      for key, ci, _, fmt in METRICS],
            "ff": pct(overall["acc"]["compressed"]["ff"], 1),
            "mc": pct(overall["acc"]["compressed"]["mc"], 1),
            "gates": (f"{sum(g['passed'] for g in gates)}/{len(gates)} passed" if gates else "none"),
            "passed": _gates_passed(gates),
        })
    return rows


def _steps(runs: Sequence[Results]) -> list[dict[str, Any]]:
    """Each spec against the next less compressed one of its method: one row per language and overall,
    McNemar's exact test of FF and MC on the paired items (`results.steps_among`)."""
    rows = []
    for step in sorted(steps_among(runs), key=lambda step: _natural_key(step["spec"])):
        for lang, block in [*step["per_language"].items(), ("overall", step["overall"])]:
            rows.append({"spec": step["spec"], "against": step["against"], "lang": lang, "n": block["n"],
                         "tests": [f"{block[p]['drops']}/{block[p]['gains']}, p = {block[p]['p_value']:.2g}"
                                   for p in ("ff", "mc")]})
    return rows


def _metric_charts(runs: Sequence[Results], labels: Sequence[str], order: Sequence[int]) -> list[svg.Chart]:
    """Dissociation, ΔPR and retention with their 95% intervals, one row per spec."""
    charts = []
    for n, (key, ci, title, fmt) in enumerate(METRICS):
        chart_rows = [IntervalRow(labels[i], runs[i]["summary"]["overall"][key],
                                  runs[i]["summary"]["overall"][ci],
                                  {"metric": key, "spec": labels[i]}, emphasis=i == 0)
                      for i in order]
        charts.append(interval_rows(f"fig-sweep-{n}", f"{title} (overall) by spec", chart_rows, fmt,
                                    width=360, domain=(0.0, 1.0) if fmt is pct else None))
    return charts


def _accuracy_charts(runs: Sequence[Results], labels: Sequence[str], order: Sequence[int]) -> list[svg.Chart]:
    """The compressed model's FF and MC accuracy, one row per spec, beside the reference's."""
    charts = []
    for n, (probe, title) in enumerate(ACCURACY, start=len(METRICS)):
        chart_rows = [IntervalRow(labels[i], runs[i]["summary"]["overall"]["acc"]["compressed"][probe], None,
                                  {"metric": f"acc.compressed.{probe}", "spec": labels[i]}, emphasis=i == 0)
                      for i in order]
        reference = runs[0]["summary"]["overall"]["acc"]["reference"][probe]
        caption = f"Compressed model; the reference scores {pct(reference, 1)}. {NO_INTERVAL}"
        charts.append(interval_rows(f"fig-sweep-{n}", f"{title} (overall) by spec", chart_rows,
                                    functools.partial(pct, digits=1), width=360, domain=(0.0, 1.0),
                                    caption=caption))
    return charts


def _number(value: Any) -> str:
    """A grid bound as the search spec writes it (0.3, 0.05); anything else as text."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def search_block(search: Mapping[str, Any]) -> dict[str, Any]:
    """What a search ran, in evaluation order, what it chose and where passing was not monotone.
    Every string here comes from the results file: the template escapes it."""
    passed = {str(level.get("spec")): None if level.get("passed") is None else bool(level["passed"])
              for level in search.get("levels") or () if isinstance(level, Mapping)}
    method = str(search.get("method", ""))
    evaluated = [{"spec": str(spec), "passed": passed.get(str(spec))} for spec in search.get("evaluated") or ()]
    best = search.get("best")
    return {
        "method": method,
        "grid": f"{method}:{_number(search.get('low'))}..{_number(search.get('high'))}, "
                f"step {_number(search.get('step'))}",
        "evaluated": evaluated,
        "best": None if best is None else str(best),
        "violations": [str(v) for v in search.get("monotonicity_violations") or ()],
    }


def sweep_section(results: Results, sweep: Sequence[Results],
                  search: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Table rows and one small chart per metric over specs (and, for a search, the search and the
    accuracy charts); None when there is neither a sweep nor a search."""
    if not sweep and search is None:
        return None
    check_sweep(results, sweep)
    runs = [results, *sweep]
    labels = _labels(runs)
    order = sorted(range(len(runs)), key=lambda i: _natural_key(labels[i]))
    block = None if search is None else search_block(search)
    charts = _metric_charts(runs, labels, order) + _accuracy_charts(runs, labels, order)
    return {"rows": _rows(runs, labels, order, block and block["best"]), "charts": charts, "search": block,
            "steps": _steps(runs)}
