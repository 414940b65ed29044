"""The report for a run with served models: censored gold ranks (known only as >k) render as such
in the item explorer and are left out of Fig. 3's shares with a note saying how many, and the
"Served models" block shows each probe's capability, as escaped text."""

from __future__ import annotations

import html as html_lib
import json
import re

import pytest
from markupsafe import escape

from illusion_checks.report import item_stats, make_report, write_report
from illusion_checks.report.figures import all_figures
from tests.helpers.browser import Page
from tests.helpers.rows import K, served_results

CAPABILITIES = {
    "greedy": "exact (temperature=0, returned token ids)",
    "mc": "exact (vLLM prompt_logprobs)",
    "gold_rank": f"approximate: known within the top {K} (echo + logprobs); beyond it, >{K}",
    "beam": "unavailable: the server has no beam search (vLLM's use_beam_search)",
    "sample": "exact (seeded n=10, top_p=0.9)",
    "tokenizer": "server /tokenize (vllm)",
}
HOSTILE = "approximate: <script>window.__pwned=1</script> & more"


def server(model: str = "smol", **capabilities: str) -> dict:
    return {"url": "http://127.0.0.1:8311/v1", "model": model, "entry": {"id": model},
            "version": "vllm 0.32.0", "capabilities": {**CAPABILITIES, **capabilities}}


@pytest.fixture(scope="module")
def served() -> dict:
    """Both models read from top-20 servers (their ranks beyond 20 censored); a hostile capability."""
    results = served_results(roles=("reference", "compressed"))
    results["config"]["reference"]["server"] = server("ref-smol")
    results["config"]["compressed"]["server"] = server(mc=HOSTILE)
    return results


def scripts(page: str) -> list[tuple[str, str]]:
    return re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)


def censored_count(items: list[dict]) -> int:
    return sum(len(v) for v in item_stats.censored_groups(items).values())


def test_censored_ranks_are_left_out_of_the_histogram_with_a_note(served):
    items = served["items"]
    assert all(s["rank_interpretable"] for s in served["summary"]["per_language"].values())
    n = censored_count(items)
    # The censored compressed ranks of MC-only and kept items, and the reference's on its failures.
    expected = (sum(it["compressed"].get("gold_rank_above") == K
                    for it in items if it["fate"] in ("mc_only", "kept"))
                + sum(it["reference"].get("gold_rank_above") == K
                      for it in items if not it["reference"]["ff"]["correct"]))
    assert n == expected > 0
    groups = item_stats.rank_groups(items)
    assert all(isinstance(r, int) for ranks in groups.values() for r in ranks)
    assert sum(map(len, groups.values())) + n == sum(
        it["fate"] in ("mc_only", "kept") for it in items) + sum(not it["reference"]["ff"]["correct"] for it in items)

    page = make_report(served)
    note = re.search(r'<p class="table-note" id="rank-censored-note">(.*?)</p>', page, re.S).group(1)
    assert html_lib.unescape(note).startswith(
        f"{n} gold rank{'s' if n != 1 else ''} known only as >{K} (the server returns the top {K}) "
        f"{'are' if n != 1 else 'is'} not in these shares")
    # Each panel says how many of its own group's ranks it left out.
    fig = all_figures(served, ["en", "sw"])
    overall = next(c for c in fig["ranks"] if c.title == "overall")
    left = len(item_stats.censored_groups(items)["reference_failures"])
    assert left and f"ref. failures n={len(groups['reference_failures'])} (+{left} >{K} left out)" in overall.caption
    assert not item_stats.censored_groups(items)["mc_only"]  # no rank beyond 20: nothing left out
    assert f"MC-only n={len(groups['mc_only'])} · " in overall.caption


def test_no_note_without_censored_ranks(small_results):
    page = make_report(small_results)
    assert 'id="rank-censored-note"' not in page and "known only as" not in page
    assert 'id="served"' not in page and "left out)" not in page


def test_the_explorer_data_carries_the_bound_of_each_censored_rank(served):
    (_, payload), _ = scripts(make_report(served))
    shown = json.loads(payload)["items"]
    censored = [(a["id"], b["compressed"]) for a, b in zip(served["items"], shown)
                if a["compressed"].get("gold_rank_above") is not None]
    assert censored
    assert all(o["gold_rank"] is None and o["gold_rank_above"] == K for _, o in censored)


def test_served_models_block_lists_each_probe_as_escaped_text(served):
    page = make_report(served)
    section = re.search(r'<section id="served".*?</section>', page, re.S).group(0)
    assert section.index('data-role="reference"') < section.index('data-role="compressed"')
    assert "reference: model <code>ref-smol</code> at <code>http://127.0.0.1:8311/v1</code>" in section
    section = section[section.index('data-role="compressed"'):]
    assert "<code>smol</code> at <code>http://127.0.0.1:8311/v1</code> (vllm 0.32.0)" in section
    rows = {probe: kind for kind, probe in re.findall(
        r'<tr class="(cap-[a-z]+)"><th scope="row">([^<]*)</th>', section)}
    assert rows == {"greedy": "cap-exact", "mc": "cap-approximate", "gold_rank": "cap-approximate",
                    "beam": "cap-unavailable", "sample": "cap-exact", "tokenizer": "cap-other"}
    for probe, how in CAPABILITIES.items():
        if probe != "mc":
            assert f'<th scope="row">{probe}</th><td>{escape(how)}</td>' in section, probe
    # A hostile capability string stays text: escaped, and no third script element.
    assert "<script>window.__pwned" not in page
    assert "approximate: &lt;script&gt;window.__pwned=1&lt;/script&gt; &amp; more" in section
    assert len(scripts(page)) == 2
    assert '<a href="#served">Served models</a>' in page


def test_only_the_served_role_gets_a_table_and_odd_fields_do_not_break_it(served):
    reference = {k: v for k, v in served["config"]["reference"].items() if k != "server"}
    section = re.search(r'<section id="served".*?</section>',
                        make_report({**served, "config": {**served["config"], "reference": reference}}), re.S).group(0)
    assert 'data-role="compressed"' in section and 'data-role="reference"' not in section
    odd = {"url": "<b>u</b>", "model": "ref", "version": None, "capabilities": {"<i>x</i>": "unavailable: y"}}
    results = {**served, "config": {**served["config"], "reference": {**reference, "server": odd}}}
    section = re.search(r'<section id="served".*?</section>', make_report(results), re.S).group(0)
    assert "<code>&lt;b&gt;u&lt;/b&gt;</code> (version unknown)" in section
    assert ('<tr class="cap-unavailable"><th scope="row">&lt;i&gt;x&lt;/i&gt;</th><td>unavailable: y</td></tr>'
            in section)


@pytest.mark.browser
def test_the_explorer_shows_a_censored_rank_as_beyond_k(browser, served, artifacts):
    from playwright.sync_api import expect

    path = artifacts / "report-browser-censored.html"
    write_report(path, served)
    page = Page(browser, path)
    pg = page.page
    it = next(it for it in served["items"] if it["compressed"].get("gold_rank_above") == K
              and it["reference"]["gold_rank"] is not None)
    pg.fill("#filter-text", it["id"])
    expect(pg.locator(".item-row")).to_have_count(1)
    row = pg.locator(".item-row").first
    expect(row.locator(".rank")).to_have_text(f"{it['reference']['gold_rank']} \u2192 >{K}")
    row.click()
    line = pg.locator(".item-detail .rank-line").first.inner_text()
    assert f"compressed >{K} (beyond the server's top {K})" in line
    # Both censored: each side says so; an exact rank still shows as itself.
    both = next(it for it in served["items"] if it["compressed"].get("gold_rank_above") == K
                and it["reference"].get("gold_rank_above") == K)
    pg.fill("#filter-text", both["id"])
    expect(pg.locator(".item-row .rank")).to_have_text(f">{K} \u2192 >{K}")
    exact = next(it for it in served["items"] if it["compressed"]["gold_rank"] is not None
                 and it["reference"]["gold_rank"] is not None)
    pg.fill("#filter-text", exact["id"])
    expect(pg.locator(".item-row .rank")).to_have_text(
        f"{exact['reference']['gold_rank']} \u2192 {exact['compressed']['gold_rank']}")
    served_text = pg.locator("#served").inner_text()
    assert HOSTILE in served_text and "unavailable: the server has no beam search" in served_text
    assert pg.evaluate("typeof window.__pwned") == "undefined"
    assert page.errors() == [] and page.dialogs == []
    page.close()


def test_censored_note_counts_each_bound():
    from illusion_checks.report.figures import censored_note

    assert censored_note({"mc_only": [], "kept": []}) == ""
    assert censored_note({"kept": [20]}).startswith(
        "1 gold rank known only as >20 (the server returns the top 20) is not in these shares")
    assert censored_note({"mc_only": [20, 5], "reference_failures": [20]}).startswith(
        "3 gold ranks known only as beyond a server's top k (1 as >5, 2 as >20) are not in these shares")
