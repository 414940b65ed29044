"""Chart geometry (svg, charts, figures, sweep): shapes add up and every label matches the summary."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from illusion_checks.report import figures, item_stats, svg, sweep
from illusion_checks.report.charts import (IntervalRow, Series, StackRow, grouped_bars,
                                           interval_rows, stacked_rows)
from illusion_checks.report.formats import pct
from tests.helpers.synth import PROFILES, make_results

LANGS = ["ar", "en", "sw"]


def texts(chart: svg.Chart) -> list[svg.Mark]:
    return [m for m in chart.marks if m.kind == "text"]


def labelled(chart: svg.Chart) -> dict[tuple[str, str], str]:
    return {(m.data["lang"], m.data["metric"]): m.text for m in chart.marks if "metric" in m.data}


def lookup(summary: dict, lang: str, path: str):
    s = summary["overall"] if lang == "overall" else summary["per_language"][lang]
    for key in path.split("."):
        s = s[key]
    return s


@pytest.mark.parametrize("values, expected", [
    ([0.12, 0.43], (0.0, 0.6, 0.2)),
    ([-0.07, 0.3], (-0.1, 0.3, 0.1)),
    ([], (0.0, 0.1, 0.025)),
    ([0.0, 0.2], (0.0, 0.2, 0.05)),
])
def test_nice_domain(values, expected):
    assert svg.nice_domain(values) == pytest.approx(expected)


def test_scale_and_ticks():
    scale = svg.Scale(0, 1, 100, 0)
    assert scale(0) == 100 and scale(1) == 0 and scale(0.25) == 75
    assert svg.ticks(-0.1, 0.3, 0.1) == [-0.1, 0.0, 0.1, 0.2, 0.3]


@pytest.mark.parametrize("kind, attrs, data, message", [
    ("text", {"x": 1, "onload": "alert(1)"}, {}, "attribute 'onload' is not allowed on <text>"),
    ("rect", {"href": "javascript:alert(1)"}, {}, "attribute 'href' is not allowed"),
    ("circle", {"style": "fill:red"}, {}, "attribute 'style' is not allowed"),
    ("text", {"x": 1}, {"bad key": "v"}, "data key 'bad key'"),
    ("script", {}, {}, "kind must be one of rect, line, text, circle, but is 'script'"),
])
def test_marks_only_take_our_attribute_names(kind, attrs, data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        svg.Mark(kind, attrs, "x", data)


def test_every_mark_the_helpers_build_passes_the_allow_list():
    marks = [svg.rect(0, 0, 1, 1, "bar", "tip", {"metric": "m"}), svg.line(0, 0, 1, 1, "axis"),
             svg.text(0, 0, "label", "val", "end", {"lang": "en"}), svg.circle(0, 0, 2, "point")]
    assert {name for mark in marks for name in mark.attrs} == svg.ATTRIBUTES


def test_stacked_segments_fill_the_bar_and_label_the_highlight():
    series = [Series("a", "a"), Series("b", "b"), Series("c", "c")]
    rows = [StackRow("x", [5, 3, 2], highlight=1, highlight_text="30%", highlight_data={"metric": "m", "lang": "x"}),
            StackRow("y", [4, 0, 0], highlight=1, highlight_text="0%", highlight_data={"metric": "m", "lang": "y"}),
            StackRow("z", [0, 0, 0], highlight=1, highlight_text="n/a", highlight_data={"metric": "m", "lang": "z"})]
    chart = stacked_rows("c", "t", series, rows, width=600)
    rects = [m for m in chart.marks if m.kind == "rect"]
    x_bar = [r for r in rects if r.text.startswith("x ·")]
    assert sum(r.attrs["width"] for r in x_bar) == pytest.approx(600 - 96 - 104, abs=0.3)
    assert labelled(chart) == {("x", "m"): "30%", ("y", "m"): "0%", ("z", "m"): "n/a"}


def test_grouped_bars_handle_negative_and_missing_values():
    chart = grouped_bars("g", "t", ["p", "q"], [Series("s", "s")], [[0.2], [None]], pct,
                         data=[[{"metric": "m", "lang": "p"}], [{"metric": "m", "lang": "q"}]])
    assert labelled(chart) == {("p", "m"): "20%", ("q", "m"): "n/a"}
    down = grouped_bars("g", "t", ["p"], [Series("s", "s")], [[-0.1]], pct)
    zero_y = next(m for m in down.marks if m.kind == "line" and m.attrs["class"] == "axis").attrs["y1"]
    bar = next(m for m in down.marks if m.kind == "rect")
    assert bar.attrs["y"] == pytest.approx(zero_y, abs=0.1) and bar.attrs["height"] > 0


def test_interval_rows_draw_whiskers_at_the_interval():
    chart = interval_rows("i", "t", [IntervalRow("a", 0.3, [0.2, 0.4], {"metric": "m", "lang": "a"}),
                                     IntervalRow("b", None, None, {"metric": "m", "lang": "b"})],
                          pct, domain=(0.0, 1.0))
    assert labelled(chart) == {("a", "m"): "30%", ("b", "m"): "n/a"}
    assert len([m for m in chart.marks if m.kind == "circle"]) == 1


def test_every_figure_label_matches_the_summary(small_results):
    summary = small_results["summary"]
    fig = figures.all_figures(small_results, LANGS)
    charts = [fig["fates"], fig["ladder"], fig["recovery"], *fig["ranks"], *fig["reach"], *fig["intervals"]]
    seen = set()
    for chart in charts:
        for (lang, metric), text in labelled(chart).items():
            seen.add(metric)
            value = lookup(summary, lang, metric)
            number = text.split()[-1]
            if value is None:
                assert number == "n/a", (lang, metric)
            elif number.endswith("%"):
                assert float(number[:-1]) == pytest.approx(value * 100, abs=0.5 + 1e-9), (lang, metric)
            else:
                assert float(number) == pytest.approx(value, abs=0.005 + 1e-9), (lang, metric)
    assert {"dissociation_rate", "delta_pr", "d_hat.ff", "d_hat.cs", "d_hat.mc", "acc.compressed.beam",
            "acc.reference.sample", "recovery.compressed.beam", "median_gold_rank.mc_only",
            "median_gold_rank.reference_failures"} <= seen


def test_rank_buckets_cover_every_rank():
    labels = [item_stats.bucket_label(lo, hi) for lo, hi in item_stats.RANK_BUCKETS]
    assert labels == ["1", "2", "3-4", "5-8", "9-16", "17-64", "65+"]
    shares = item_stats.bucket_shares([1, 2, 3, 4, 5, 16, 17, 64, 65, 10**6])
    assert sum(shares) == pytest.approx(1.0) and shares[-1] == pytest.approx(0.2)
    assert item_stats.bucket_shares([]) == [None] * 7


def test_rank_groups_use_each_models_rank(small_results):
    items = small_results["items"]
    groups = item_stats.rank_groups(items)
    assert len(groups["mc_only"]) == small_results["summary"]["overall"]["fates"]["mc_only"]
    assert len(groups["reference_failures"]) == sum(not it["reference"]["ff"]["correct"] for it in items)
    assert sorted(groups["reference_failures"]) == sorted(
        it["reference"]["gold_rank"] for it in items if not it["reference"]["ff"]["correct"])
    assert all(math.isfinite(r) for r in groups["kept"])


def test_prune_gap_rows(small_results):
    rows = figures.prune_gap_rows(small_results["summary"], LANGS)
    assert [r["lang"] for r in rows] == [*LANGS, "overall"]
    gap = small_results["summary"]["per_language"]["sw"]["prune_gap"]["one_shot"]
    assert rows[2]["cells"][5] == {"metric": "prune_gap.one_shot", "text": f"{gap * 100:+.1f} pp"}


def test_sweep_orders_specs_and_labels_calibrations(small_results):
    other = make_results(tuple(LANGS), 60, n_resamples=10, calibration="balanced")
    section = sweep.sweep_section(small_results, [other])
    assert [r["spec"] for r in section["rows"]] == ["wanda:0.5 (balanced)", "wanda:0.5 (english)"]
    assert [r["current"] for r in section["rows"]] == [False, True]
    assert sweep.sweep_section(small_results, []) is None
    assert sweep._natural_key("wanda:0.5") < sweep._natural_key("wanda:0.75")


def test_rank_figure_withholds_a_language_whose_rank_is_not_interpretable():
    results = make_results(tuple(LANGS), 60, n_resamples=10,
                           profiles={"sw": dataclasses.replace(PROFILES["sw"], begins_with_gold=0.2)})
    per = results["summary"]["per_language"]
    assert [per[lang]["rank_interpretable"] for lang in LANGS] == [True, True, False]
    fig = figures.all_figures(results, LANGS)

    # No sw panel and no sw rank anywhere; overall pools ar and en only, with its own medians.
    assert [c.title for c in fig["ranks"]] == ["ar", "en", "overall (ar, en)"]
    assert all(lang in ("ar", "en") for c in fig["ranks"] for lang, _ in labelled(c))
    pooled = item_stats.rank_groups([it for it in results["items"] if it["lang"] != "sw"])
    assert f"MC-only n={len(pooled['mc_only'])}" in fig["ranks"][-1].caption

    # In its place, the sentence with sw's real answer-start counts.
    ref, comp = per["sw"]["answer_start"]["reference"], per["sw"]["answer_start"]["compressed"]
    assert ref["share"] < 0.5 and comp["share"] < 0.5
    assert fig["ranks_withheld"] == (("sw", (
        "sw: the gold rank is not interpretable for this model and prompt: only "
        f"{ref['share']:.0%} ({ref['n_begins_with_gold']} of {ref['n_ff_correct']}) of the reference's and "
        f"{comp['share']:.0%} ({comp['n_begins_with_gold']} of {comp['n_ff_correct']}) of the compressed model's "
        "correct answers begin with the gold where the answer starts (at least 50% needed). "
        "Try --illusion-chat-template or a 1-shot prompt.")),)
    assert [row["verdict"] for row in fig["answer_start"]] == [
        "yes", "yes", "no: not plotted", "yes (plotted without sw)"]

    # Results written before the field existed (null) are plotted as before.
    for block in [*per.values(), results["summary"]["overall"]]:
        block["rank_interpretable"] = None
    fig = figures.all_figures(results, LANGS)
    assert [c.title for c in fig["ranks"]] == [*LANGS, "overall"] and fig["ranks_withheld"] == ()


def test_ranks_that_failed_the_boundary_check_are_counted_and_left_out_of_fig_3():
    """Issue 22 point 2: two MC-only outcomes whose ranked path failed the boundary check leave
    the bars and medians, the panel's caption says so, and the answer-start table counts them."""
    from illusion_checks.metrics import summarize

    results = make_results(("en",), 60, n_resamples=10)
    mc_only = [it for it in results["items"] if it["fate"] == "mc_only"]
    assert len(mc_only) >= 3
    for it in mc_only[:2]:
        out = it["compressed"]
        out["gold_token"] = {**(out.get("gold_token") or {"id": 1, "text": "x", "offset": 0, "conditioned_on": "",
                                                         "source": "gold"}),
                             "boundary_ok": False, "boundary_reason": "a space doubled",
                             "path": [{"id": 1, "text": "x", "rank": out["gold_rank"], "margin": -1.0}]}
    results["summary"] = summarize(results["items"], n_resamples=10)
    en = results["summary"]["per_language"]["en"]
    assert en["rank_boundary"]["compressed"]["n_failed"] == 2
    assert en["rank_boundary"]["left_out_of_medians"]["mc_only"] == 2
    fig = figures.all_figures(results, ["en"])
    groups = item_stats.rank_groups(results["items"])
    assert f"MC-only n={len(groups['mc_only'])} (+2 failed the boundary check, left out)" in fig["ranks"][0].caption
    assert len(groups["mc_only"]) == len([it for it in mc_only if it["compressed"]["gold_rank"] is not None]) - 2
    row = fig["answer_start"][0]
    assert [c["text"] for c in row["cells"][-2:]] == ["0", "2"]
    assert row["cells"][-1]["metric"] == "rank_boundary.compressed.n_failed"
