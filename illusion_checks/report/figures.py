"""The paper's figures for one run, per language plus 'overall', as `svg.Chart`s and table rows.

Fig. 8 fate breakdown, Fig. 2 output-mode ladder, Fig. 3 gold-rank distribution (with the
answer-start diagnostic that says where it may be read), Fig. 4 greedy vs beam/sample
reachability and recovery, Table 1 prune gap, and the dissociation / ΔPR intervals. Every value
label names its summary field in `data-metric` (a dotted path into `summary.per_language[lang]`
or `summary.overall`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from illusion_checks.fates import FATE_ORDER
from illusion_checks.ranks import censored_median
from illusion_checks.records import MODELS
import illusion_checks.report.findings as findings
import illusion_checks.report.item_stats as item_stats
import illusion_checks.report.svg as svg
from illusion_checks.report.charts import (IntervalRow, Series, StackRow, grouped_bars,
                                           interval_rows, stacked_rows)
from illusion_checks.report.formats import pct, points, rank, signed

Summary = Mapping[str, Any]

FATE_LABELS = {"kept": "kept", "mc_only": "MC-only", "produced_only": "produced-only", "lost": "lost"}
FATE_SERIES = tuple(Series(FATE_LABELS[f.value], f"fate-{f.value}") for f in FATE_ORDER)
OVERALL = "overall"


def _per_lang(summary: Summary, langs: Sequence[str]) -> list[tuple[str, Summary]]:
    """(label, Summary) for each language, then the pooled 'overall'."""
    return [(lang, summary["per_language"][lang]) for lang in langs] + [(OVERALL, summary["overall"])]


def _get(s: Summary, path: str) -> Any:
    for key in path.split("."):
        s = s[key]
    return s


def _tag(lang: str, metric: str) -> dict[str, str]:
    return {"metric": metric, "lang": lang}


def fate_chart(summary: Summary, langs: Sequence[str]) -> svg.Chart:
    """Fig. 8: each language's both-correct items split into the four fates, MC-only labelled."""
    rows = [StackRow(label=lang, counts=[s["fates"][f.value] for f in FATE_ORDER], highlight=1,
                     highlight_text=pct(s["dissociation_rate"]),
                     highlight_data=_tag(lang, "dissociation_rate"),
                     empty_text="no both-correct items")
            for lang, s in _per_lang(summary, langs)]
    return stacked_rows("fig-fates", "Fate of the reference's both-correct items", FATE_SERIES, rows,
                        width=900,
                        caption="Items the reference both produced (FF) and recognized (MC), by what "
                                "the compressed model still does. The MC-only share is the "
                                "dissociation rate (labelled).")


def ladder_chart(summary: Summary, langs: Sequence[str]) -> svg.Chart:
    """Fig. 2: headroom-normalized drop d̂ for FF, CS and MC; more answer support, less damage."""
    modes = (("ff", Series("FF (open)", "mode-ff")), ("cs", Series("CS (candidates shown)", "mode-cs")),
             ("mc", Series("MC (scored)", "mode-mc")))
    rows = _per_lang(summary, langs)
    return grouped_bars(
        "fig-ladder", "Output-mode ladder: normalized drop d̂", [lang for lang, _ in rows],
        [ser for _, ser in modes], [[s["d_hat"][m] for m, _ in modes] for _, s in rows],
        lambda v: "n/a" if v is None else f"{v:.2f}", bar_width=26,
        data=[[_tag(lang, f"d_hat.{m}") for m, _ in modes] for lang, _ in rows],
        caption="d̂ = (reference acc - compressed acc) / reference acc. Open generation should "
                "drop most and MC least if compression hurts production more than selection.")


RANK_SERIES = (("mc_only", Series("MC-only (compressed rank)", "rank-mc-only")),
               ("kept", Series("kept (compressed rank; 1 by construction where the answer begins with the gold)",
                               "rank-kept")),
               ("reference_failures", Series("reference FF failures (reference rank)", "rank-ref-fail")))
# The paper's two medians (3.5 for MC-only, 17 for reference failures). A kept item whose answer
# begins with the gold ranks the model's own greedy token: 1 by construction, so no median is marked.
RANK_MEDIANS = ("mc_only", "reference_failures")
RANK_SHORT = {"mc_only": "MC-only", "kept": "kept", "reference_failures": "ref. failures"}


@dataclasses.dataclass(frozen=True)
class RankFigure:
    """Fig. 3: a panel per language whose gold rank may be read, and why each other one has none."""

    panels: tuple[svg.Chart, ...]
    withheld: tuple[tuple[str, str], ...]  # (language or 'overall', sentence)
    censored: str = ""  # how many plotted ranks are known only as >k and left out; "" when none


def _rank_panel(chart_id: str, title: str, items: Sequence[Mapping[str, Any]],
                medians: Mapping[str, float | None], tags: Mapping[str, Mapping[str, str]],
                caption: str = "") -> svg.Chart:
    """One small multiple: each group's share of gold ranks per bucket, medians top-right."""
    buckets = [item_stats.bucket_label(lo, hi) for lo, hi in item_stats.RANK_BUCKETS]
    groups, censored = item_stats.rank_groups(items), item_stats.censored_groups(items)
    failed = item_stats.boundary_failures(items)
    shares = [item_stats.bucket_shares(groups[key]) for key, _ in RANK_SERIES]
    chart = grouped_bars(
        chart_id, title, buckets, [ser for _, ser in RANK_SERIES],
        [[shares[g][b] for g in range(len(RANK_SERIES))] for b in range(len(buckets))],
        pct, bar_width=11, height=190, show_values=False, domain=(0.0, 1.0),
        caption=caption + " · ".join(f"{RANK_SHORT[key]} n={len(groups[key])}{_left_out(censored[key])}"
                                     + _failed(failed[key]) for key, _ in RANK_SERIES))
    series = dict(RANK_SERIES)
    marks = [svg.text(chart.width - 10, 14 + 12 * i, f"{RANK_SHORT[key]} median {rank(medians[key])}",
                      f"median {series[key].cls}", "end", tags.get(key, {}))
             for i, key in enumerate(RANK_MEDIANS)]
    return _with_marks(chart, marks, legend=False)


def rank_figure(items_by_lang: Mapping[str, Sequence[Mapping[str, Any]]], summary: Summary,
                langs: Sequence[str], chat_template: bool = False) -> RankFigure:
    """Fig. 3 as small multiples, one per language whose gold rank is interpretable (medians
    from the summary); every other language gets a sentence instead. 'overall' pools only the
    languages shown, so its medians are then recomputed from their items (and not tagged)."""
    panels: list[svg.Chart] = []
    withheld: list[tuple[str, str]] = []
    shown = [lang for lang in langs if findings.rank_interpretable(summary["per_language"][lang])]
    for lang in langs:
        s = summary["per_language"][lang]
        if lang not in shown:
            withheld.append((lang, findings.rank_not_interpretable(lang, s, chat_template)))
            continue
        panels.append(_rank_panel(f"fig-ranks-{len(panels)}", lang, items_by_lang[lang], s["median_gold_rank"],
                                  {key: _tag(lang, f"median_gold_rank.{key}") for key, _ in RANK_SERIES}))
    overall = summary[OVERALL]
    if len(shown) == len(langs) and findings.rank_interpretable(overall):
        panels.append(_rank_panel(f"fig-ranks-{len(panels)}", OVERALL, items_by_lang[OVERALL],
                                  overall["median_gold_rank"],
                                  {key: _tag(OVERALL, f"median_gold_rank.{key}") for key, _ in RANK_SERIES}))
    elif len(shown) == len(langs):
        withheld.append((OVERALL, findings.rank_not_interpretable(OVERALL, overall, chat_template)))
    elif shown:
        pooled = [it for lang in shown for it in items_by_lang[lang]]
        groups, censored = item_stats.rank_groups(pooled), item_stats.censored_groups(pooled)
        medians = {key: censored_median(v, censored[key]) for key, v in groups.items()}
        panels.append(_rank_panel(f"fig-ranks-{len(panels)}", f"{OVERALL} ({', '.join(shown)})", pooled, medians,
                                  {}, caption=f"pooled over {', '.join(shown)} only: "))
    else:
        withheld.append((OVERALL, f"{OVERALL}: not shown, since the gold rank is interpretable in no language."))
    plotted = [it for lang in shown for it in items_by_lang[lang]]
    return RankFigure(tuple(panels), tuple(withheld), censored_note(item_stats.censored_groups(plotted)))


def _failed(n: int) -> str:
    """' (+2 failed the boundary check, left out)' after a group's n; "" when none did."""
    return f" (+{n} failed the boundary check, left out)" if n else ""


def _left_out(bounds: Sequence[int]) -> str:
    """' (+3 >20 left out)' after a group's n, for its ranks known only as beyond a top k."""
    if not bounds:
        return ""
    return f" (+{len(bounds)} {' '.join(f'>{k}' for k in sorted(set(bounds)))} left out)"


def censored_note(censored: Mapping[str, Sequence[int]]) -> str:
    """The sentence under Fig. 3 saying how many plotted gold ranks a server knew only as >k, so
    that no bucket holds them; "" when there are none."""
    by_bound = Counter(k for bounds in censored.values() for k in bounds)
    n = sum(by_bound.values())
    if not n:
        return ""
    ranks = f"{n} gold rank{'s' if n != 1 else ''}"
    if len(by_bound) == 1:
        (k, _), = by_bound.items()
        known = f"known only as >{k} (the server returns the top {k})"
    else:
        parts = ", ".join(f"{c} as >{k}" for k, c in sorted(by_bound.items()))
        known = f"known only as beyond a server's top k ({parts})"
    return (f"{ranks} {known} {'are' if n != 1 else 'is'} not in these shares, since no bucket can hold "
            "them; a median that falls among them is unknown (n/a).")


def answer_start_rows(summary: Summary, langs: Sequence[str]) -> list[dict[str, Any]]:
    """Per language: how many of each model's FF-correct answers begin with the gold where the
    answer starts, and whether that makes the gold rank interpretable; [] for older results."""
    rows = []
    withheld = [lang for lang in langs if not findings.rank_interpretable(summary["per_language"][lang])]
    for lang, s in _per_lang(summary, langs):
        if "answer_start" not in s:
            return []
        cells = []
        for model in MODELS:
            block = s["answer_start"][model]
            cells.append({"metric": None, "text": f"{block['n_begins_with_gold']} of {block['n_ff_correct']}"})
            cells.append({"metric": f"answer_start.{model}.share", "text": pct(block["share"])})
        for model in MODELS:  # ranks read after a failed boundary check: counted, and left out of the medians
            checked = s.get("rank_boundary", {}).get(model)
            cells.append({"metric": f"rank_boundary.{model}.n_failed" if checked else None,
                          "text": str(checked["n_failed"]) if checked else "n/a"})
        verdict = s.get("rank_interpretable")
        text = {True: "yes", False: "no: not plotted", None: "unknown"}[verdict]
        if lang == OVERALL and verdict is not False and withheld:
            text += f" (plotted without {', '.join(withheld)})"
        rows.append({"lang": lang, "cells": cells, "interpretable": verdict, "verdict": text})
    return rows


def reach_panels(summary: Summary, langs: Sequence[str]) -> list[svg.Chart]:
    """Fig. 4a as small multiples: greedy accuracy vs beam-5 / 10-sample reachability, both models."""
    probes = (("ff", Series("greedy", "probe-greedy")), ("beam", Series("beam-5", "probe-beam")),
              ("sample", Series("10-sample", "probe-sample")))
    models = ("reference", "compressed")
    panels = [grouped_bars(f"fig-reach-{i}", lang, list(models), [ser for _, ser in probes],
                           [[s["acc"][m][p] for p, _ in probes] for m in models], pct,
                           data=[[_tag(lang, f"acc.{m}.{p}") for p, _ in probes] for m in models],
                           domain=(0.0, 1.0), bar_width=26, height=180)
              for i, (lang, s) in enumerate(_per_lang(summary, langs))]
    return [_with_marks(p, [], legend=False) for p in panels]


def recovery_chart(summary: Summary, langs: Sequence[str]) -> svg.Chart:
    """Fig. 4b: among each model's greedy FF failures, the share beam-5 / sampling still reach."""
    keys = (("compressed", "beam", Series("compressed · beam-5", "rec-comp-beam")),
            ("compressed", "sample", Series("compressed · 10-sample", "rec-comp-sample")),
            ("reference", "beam", Series("reference · beam-5", "rec-ref-beam")),
            ("reference", "sample", Series("reference · 10-sample", "rec-ref-sample")))
    rows = _per_lang(summary, langs)
    return grouped_bars(
        "fig-recovery", "Recovery among greedy failures", [lang for lang, _ in rows],
        [ser for *_, ser in keys], [[s["recovery"][m][p] for m, p, _ in keys] for _, s in rows], pct,
        data=[[_tag(lang, f"recovery.{m}.{p}") for m, p, _ in keys] for lang, _ in rows],
        notes=[f"{s['recovery']['compressed']['n_failures']}/{s['recovery']['reference']['n_failures']}"
               for _, s in rows],
        bar_width=24, tick_fmt=pct,
        caption="Under each language: number of greedy FF failures, compressed/reference. If "
                "compression demotes answers, its failures recover more often than the reference's own.")


def interval_charts(summary: Summary, langs: Sequence[str]) -> list[svg.Chart]:
    """Dissociation rate and ΔPR per language with their 95% bootstrap intervals."""
    rows = _per_lang(summary, langs)
    diss = [IntervalRow(lang, s["dissociation_rate"], s["dissociation_ci95"],
                        _tag(lang, "dissociation_rate"), lang == OVERALL) for lang, s in rows]
    dpr = [IntervalRow(lang, s["delta_pr"], s["delta_pr_ci95"], _tag(lang, "delta_pr"), lang == OVERALL)
           for lang, s in rows]
    return [
        interval_rows("fig-ci-dissociation", "Dissociation rate, 95% CI", diss, pct,
                      caption="MC-only / both-correct; overall is pooled."),
        interval_rows("fig-ci-delta-pr", "ΔPR = d̂(FF) - d̂(MC), 95% CI", dpr, signed,
                      caption="Positive: open generation degrades more than MC. Overall is the "
                              "mean over languages."),
    ]


def prune_gap_rows(summary: Summary, langs: Sequence[str]) -> list[dict[str, Any]]:
    """Table 1: 0-shot (500-char context) and 1-shot FF accuracy for both models and the prune gap."""
    cells = (("acc.reference.zero_shot_short", pct), ("acc.compressed.zero_shot_short", pct),
             ("acc.reference.one_shot", pct), ("acc.compressed.one_shot", pct),
             ("prune_gap.zero_shot", points), ("prune_gap.one_shot", points))
    return [{"lang": lang, "cells": [{"metric": path, "text": fmt(_get(s, path))} for path, fmt in cells]}
            for lang, s in _per_lang(summary, langs)]


def truncation_rows(summary: Summary, langs: Sequence[str]) -> list[dict[str, Any]]:
    """Appendix B(6), beside the fates: per language, the share of items whose passage each prompt kind
    cut to its token cap (the reference's prompts), the items whose FF prompt lost the gold span (left
    out of both-correct; either model), and the CS prompts that had to cut FF's passage further.
    Empty for results written before truncation was recorded."""
    if "truncation" not in summary["overall"]:
        return []
    cells = [(f"truncation.reference.{kind}", pct) for kind in ("ff", "cs", "one_shot", "zero_shot_short")]
    rows = []
    for lang, s in _per_lang(summary, langs):
        block = s.get("truncation")
        if block is None:  # no outcome of this language recorded it
            rows.append({"lang": lang, "cells": [{"metric": "truncation", "text": "n/a"}] * 6, "bad": False})
            continue
        counted = [{"metric": path, "text": fmt(_get(s, path))} for path, fmt in cells]
        cut = max(block[m]["gold_cut"] for m in MODELS)
        differs = block["reference"]["cs_passage_differs"]
        rows.append({"lang": lang, "cells": [*counted, {"metric": "truncation.gold_cut", "text": str(cut)},
                                             {"metric": "truncation.reference.cs_passage_differs", "text": str(differs)}],
                     "bad": cut > 0})
    return rows


def one_shot_missing(summary: Summary, langs: Sequence[str]) -> list[str]:
    """Languages where the 1-shot probe ran on no item (no exemplar), so Table 1 says n/a."""
    return [lang for lang in langs
            if all(summary["per_language"][lang]["acc"][m]["one_shot"] is None for m in MODELS)]


def _with_marks(chart: svg.Chart, extra: Sequence[svg.Mark], legend: bool = True) -> svg.Chart:
    return dataclasses.replace(chart, marks=chart.marks + tuple(extra),
                               legend=chart.legend if legend else ())


def _nonempty(values: Sequence[Any]) -> bool:
    return any(v is not None for v in values)


def all_figures(results: Mapping[str, Any], langs: Sequence[str]) -> dict[str, Any]:
    """Every figure of the report, keyed by template slot."""
    summary = results["summary"]
    items_by_lang = item_stats.by_language(results["items"], langs)
    chat_template = bool(results["config"].get("probes", {}).get("chat_template", False))
    ranks = rank_figure(items_by_lang, summary, langs, chat_template)
    return {
        "fates": fate_chart(summary, langs),
        "ladder": ladder_chart(summary, langs),
        "ranks": ranks.panels,
        "ranks_withheld": ranks.withheld,
        "ranks_censored": ranks.censored,
        "rank_legend": tuple((ser.label, ser.cls) for _, ser in RANK_SERIES),
        "answer_start": answer_start_rows(summary, langs),
        "reach": reach_panels(summary, langs),
        "reach_legend": (("greedy", "probe-greedy"), ("beam-5", "probe-beam"), ("10-sample", "probe-sample")),
        "recovery": recovery_chart(summary, langs),
        "intervals": interval_charts(summary, langs),
        "prune_gap": prune_gap_rows(summary, langs),
        "truncation": truncation_rows(summary, langs),
        "one_shot_missing": one_shot_missing(summary, langs),
        "has_search": _nonempty([summary["overall"]["acc"]["compressed"]["beam"],
                                 summary["overall"]["acc"]["compressed"]["sample"]]),
    }
