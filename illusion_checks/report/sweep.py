"""Side-by-side comparison of several compression specs of one reference on one dataset."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from illusion_checks.report import svg
from illusion_checks.report.charts import IntervalRow, interval_rows
from illusion_checks.report.formats import interval, pct, signed

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


def sweep_section(results: Results, sweep: Sequence[Results]) -> dict[str, Any] | None:
    """Table rows and one small chart per metric over specs; None when there is no sweep."""
    if not sweep:
        return None
    check_sweep(results, sweep)
    runs = [results, *sweep]
    labels = _labels(runs)
    order = sorted(range(len(runs)), key=lambda i: _natural_key(labels[i]))
    rows = []
    for i in order:
        run, overall = runs[i], runs[i]["summary"]["overall"]
        gates = run["gates"]
        rows.append({
            "spec": labels[i], "current": i == 0,
            "calibration": run["config"]["compressed"]["calibration"],
            "n_both_correct": overall["n_both_correct"],
            "cells": [{"metric": key, "text": fmt(overall[key]), "ci": interval(overall[ci], fmt)}
                      for key, ci, _, fmt in METRICS],
            "ff": pct(overall["acc"]["compressed"]["ff"], 1),
            "mc": pct(overall["acc"]["compressed"]["mc"], 1),
            "gates": (f"{sum(g['passed'] for g in gates)}/{len(gates)} passed" if gates else "none"),
        })
    charts: list[svg.Chart] = []
    for n, (key, ci, title, fmt) in enumerate(METRICS):
        chart_rows = [IntervalRow(labels[i], runs[i]["summary"]["overall"][key],
                                  runs[i]["summary"]["overall"][ci],
                                  {"metric": key, "spec": labels[i]}, emphasis=i == 0)
                      for i in order]
        charts.append(interval_rows(f"fig-sweep-{n}", f"{title} (overall) by spec", chart_rows, fmt,
                                    width=360, domain=(0.0, 1.0) if fmt is pct else None))
    return {"rows": rows, "charts": charts}
