"""The report in headless Chromium: charts and rows render, filters and the keyboard work,
hostile model outputs stay text, the console stays clean, and chart labels match the JSON.

Needs the Debian `chromium` package at /usr/bin/chromium and the Python `playwright` package
(no `playwright install`: we drive the system Chromium). Without Chromium these tests skip, except
under CI=true, where they fail. Load and filter timings are in benchmarks/bench_report_browser.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from illusion_checks.report import write_report
from tests.helpers.browser import Page
from tests.helpers.synth import PROFILES, XSS_PAYLOADS, make_results, with_payloads

pytestmark = pytest.mark.browser


@pytest.fixture
def report(browser, small_results, artifacts) -> Iterator[tuple[Page, dict]]:
    results = with_payloads(small_results)
    path = artifacts / "report-browser.html"
    write_report(path, results)
    page = Page(browser, path)
    yield page, results
    page.close()


def test_charts_rows_filters_keyboard_and_xss(report, artifacts):
    from playwright.sync_api import expect

    page, results = report
    pg = page.page
    n_items = len(results["items"])

    # Charts and rows are there.
    assert pg.locator("#fig-fates rect").count() >= 3 * 4
    assert pg.locator("figure.chart svg").count() >= 12
    assert page.rows() == min(200, n_items)
    pg.screenshot(path=str(artifacts / "report-browser-top.png"))

    # Filters are labelled form controls that change the visible rows.
    for control in ("filter-lang", "filter-fate", "filter-text"):
        assert pg.locator(f"label[for={control}]").count() == 1
    pg.select_option("#filter-lang", "sw")
    sw = results["summary"]["per_language"]["sw"]
    assert page.rows() == sw["n_items"]
    assert set(pg.locator(".item-row .lang").all_inner_texts()) == {"sw"}
    pg.select_option("#filter-fate", "mc_only")
    assert page.rows() == sw["fates"]["mc_only"]
    pg.select_option("#filter-fate", "")
    pg.select_option("#filter-lang", "")
    # Search is debounced (expect() polls) and case-insensitive; five payloads mention it.
    pg.fill("#filter-text", "PWNED")
    expect(pg.locator(".item-row")).to_have_count(sum("pwned" in p for p in XSS_PAYLOADS))
    pg.fill("#filter-text", "")
    expect(pg.locator(".item-row")).to_have_count(min(200, n_items))

    # Keyboard: Tab from the search box reaches the first row, which shows a focus ring;
    # Enter expands it, Space collapses it.
    pg.focus("#filter-text")
    pg.keyboard.press("Tab")
    first = pg.locator(".item-row").first
    assert first.evaluate("el => el === document.activeElement")
    assert first.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    pg.keyboard.press("Enter")
    assert first.get_attribute("aria-expanded") == "true"
    assert pg.locator("#item-detail-0").is_visible()
    pg.keyboard.press("Space")
    assert first.get_attribute("aria-expanded") == "false"
    assert not pg.locator("#item-detail-0").is_visible()

    # Hostile outputs: expand every payload item; nothing runs, nothing becomes markup.
    for k in range(6):
        pg.locator(".item-row").nth(k).focus()
        pg.keyboard.press("Enter")
    detail = pg.locator("#item-detail-1")
    assert "<img src=x onerror=" in detail.inner_text()
    assert detail.locator("mark.gold").count() >= 3  # the hostile gold is highlighted as text
    assert pg.evaluate("typeof window.__pwned") == "undefined"
    assert pg.evaluate("document.images.length") == 0
    assert pg.evaluate("document.scripts.length") == 2
    assert pg.locator("#item-list script, #item-list svg, #item-list b, #item-list textarea").count() == 0
    assert "<script>window.__pwned=1</script>" in pg.locator("header h1").inner_text()
    assert page.dialogs == []
    pg.locator("#item-0").scroll_into_view_if_needed()
    pg.screenshot(path=str(artifacts / "report-browser-explorer.png"))
    assert page.errors() == []


def test_payloads_stay_text_even_without_the_csp(browser, small_results, artifacts):
    # The CSP alone would block inline handlers; this proves the DOM building is safe by itself.
    path = artifacts / "report-browser-nocsp.html"
    write_report(path, with_payloads(small_results))
    page = Page(browser, path, bypass_csp=True)
    pg = page.page
    for k in range(6):
        pg.locator(".item-row").nth(k).click()
    pg.wait_for_timeout(200)  # give any injected handler (img onerror) the chance to fire
    assert pg.evaluate("typeof window.__pwned") == "undefined"
    assert pg.evaluate("document.images.length") == 0
    assert pg.evaluate("document.scripts.length") == 2
    assert page.dialogs == [] and page.errors() == []
    page.close()


def _expected(summary: dict, lang: str, metric: str) -> Any:
    s = summary["overall"] if lang == "overall" else summary["per_language"][lang]
    for key in metric.split("."):
        s = s[key]
    return s


def test_chart_labels_match_the_summary(report):
    page, results = report
    labels = page.page.eval_on_selector_all(
        "[data-metric][data-lang]",
        "els => els.map(e => [e.dataset.lang, e.dataset.metric, e.textContent.trim()])")
    assert len(labels) >= 25 * 4  # 25 labelled numbers per language and overall
    summary = results["summary"]
    for lang, metric, text in labels:
        value = _expected(summary, lang, metric)
        number = text.split()[-1] if not text.endswith(" pp") else text[:-3]
        if value is None:
            assert number == "n/a", (lang, metric, text)
        elif text.endswith(" pp"):
            assert float(number) == pytest.approx(value * 100, abs=0.05 + 1e-9), (lang, metric, text)
        elif number.endswith("%"):
            assert float(number[:-1]) == pytest.approx(value * 100, abs=0.5 + 1e-9), (lang, metric, text)
        else:
            assert float(number) == pytest.approx(value, abs=0.005 + 1e-9), (lang, metric, text)
    metrics = {(lang, metric) for lang, metric, _ in labels}
    for lang in ("ar", "en", "sw", "overall"):
        for metric in ("dissociation_rate", "delta_pr", "d_hat.ff", "d_hat.mc", "acc.compressed.beam",
                       "recovery.compressed.sample", "median_gold_rank.mc_only", "prune_gap.one_shot"):
            assert (lang, metric) in metrics


def test_nine_languages_by_200_items_page_and_filter(browser, artifacts):
    # Functional only: the load and filter times are measured by benchmarks/bench_report_browser.py.
    results = make_results(items_per_language=200, n_resamples=50)
    path = artifacts / "report-9x200.html"
    write_report(path, results)
    assert path.stat().st_size < 8e6  # the report is one self-contained file: keep it mailable
    page = Page(browser, path)
    pg = page.page
    assert page.rows() == 200
    pg.select_option("#filter-fate", "mc_only")
    n_mc_only = results["summary"]["overall"]["fates"]["mc_only"]
    assert page.rows() == min(200, n_mc_only)
    pg.select_option("#filter-fate", "")
    pg.click("#show-more")
    assert page.rows() == 400
    assert page.errors() == []
    page.close()


def _visible(text: str) -> str:
    """The explorer's rendering of whitespace in a token."""
    return text.replace(" ", "\u2423").replace("\n", "\\n")


def _token_text(token: dict) -> str:
    where = (f"after '{_visible(token['conditioned_on'])}', offset {token['offset']}" if token["offset"]
             else "at the answer start")
    source = {"produced": "as the model produced it", "gold": "from the gold"}[token["source"]]
    return f"'{_visible(token['text'])}' (id {token['id']}, {where}, {source})"


def test_explorer_shows_the_ranked_token_notes_and_a_missing_one_shot(browser, artifacts):
    from playwright.sync_api import expect

    sw = dataclasses.replace(PROFILES["sw"], has_exemplar=False, begins_with_gold=0.2)
    results = with_payloads(make_results(("en", "sw"), 30, n_resamples=10, profiles={"sw": sw}))
    path = artifacts / "report-browser-answer-start.html"
    write_report(path, results)
    page = Page(browser, path)
    pg = page.page

    # The run's notes are visible near the top, the planted payload as text.
    notes = pg.locator("#notes")
    assert notes.is_visible() and "<script>window.__pwned=1</script>" in notes.inner_text()
    assert pg.locator("#notes li").count() == len(results["notes"]) == 2

    # Searching reads every item's outputs, sw's null 1-shot included; its detail says why.
    item = next(it for it in results["items"] if it["lang"] == "sw"
                and it["reference"]["gold_token"]["offset"] and it["compressed"]["gold_token"]["offset"] == 0)
    pg.fill("#filter-text", item["id"])
    expect(pg.locator(".item-row")).to_have_count(1)
    pg.locator(".item-row").first.click()
    detail = pg.locator(".item-detail").first
    one_shot = detail.locator("tr", has_text="1-shot").inner_text()
    assert one_shot.count("not run (no exemplar for this language)") == 2
    rank_line = detail.locator(".rank-line").inner_text()
    assert _token_text(item["reference"]["gold_token"]) in rank_line
    assert _token_text(item["compressed"]["gold_token"]) in rank_line
    pg.screenshot(path=str(artifacts / "report-browser-answer-start.png"), full_page=False)

    # An en item with an exemplar shows its id; a hostile token and exemplar id stay text.
    pg.fill("#filter-text", "")
    expect(pg.locator(".item-row")).to_have_count(len(results["items"]))
    pg.locator(".item-row").first.click()
    first = pg.locator("#item-detail-0")
    assert "of '<script>window.__pwned=1</script>' (id" in first.locator(".rank-line").inner_text()
    assert "exemplar <script>window.__pwned=1</script> (dataset)" in first.inner_text()
    assert pg.evaluate("typeof window.__pwned") == "undefined"
    assert pg.evaluate("document.scripts.length") == 2
    assert page.errors() == [] and page.dialogs == []
    page.close()
