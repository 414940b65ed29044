"""make_report / write_report: a complete, self-contained, escaped page from the results alone."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re

import jinja2
import pytest

from illusion_checks.report import make_report, write_report
from illusion_checks.report.explorer import explorer_data
from tests.helpers.synth import PROFILES, XSS_PAYLOADS, LangProfile, make_results, with_payloads

SCRIPT = re.compile(r"<script([^>]*)>(.*?)</script>", re.S)


def scripts(html: str) -> list[tuple[str, str]]:
    return SCRIPT.findall(html)


def test_page_is_complete_and_deterministic(small_results):
    html = make_report(small_results)
    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")
    assert make_report(small_results) == html
    for section in ('id="gates"', 'id="findings"', 'id="fig-fates"', 'id="fig-ladder"',
                    'id="fig-ranks-0"', 'id="fig-reach-0"', 'id="fig-recovery"',
                    'id="fig-ci-dissociation"', 'id="fig-ci-delta-pr"', 'id="prune-gap"',
                    'id="explorer"'):
        assert section in html
    config = small_results["config"]
    for text in (config["reference"]["name"], config["compressed"]["name"], config["compressed"]["spec"],
                 config["compressed"]["calibration"], config["dataset"]["name"], config["created"],
                 config["package_version"], "ar, en, sw"):
        assert text in html


def test_nothing_is_loaded_from_outside(small_results):
    html = make_report(small_results)
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:|//|file:)""", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert "<link" not in html and "<iframe" not in html


def test_csp_allows_exactly_the_inline_script(small_results):
    html = make_report(small_results)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    csp = csp.replace("&#39;", "'")
    assert "default-src 'none'" in csp and "img-src data:" in csp and "style-src 'unsafe-inline'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    (data_attrs, _), (code_attrs, code) = scripts(html)
    assert 'type="application/json"' in data_attrs and code_attrs == ""
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


def test_payloads_render_as_text_only(small_results):
    html = make_report(with_payloads(small_results))
    # Only our two script elements; no payload tag survives anywhere outside them as markup.
    assert len(scripts(html)) == 2
    for tag in ("<script>window", "<img", "<svg onload", "</textarea>", "<b>bold"):
        assert tag not in html, tag
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html  # header, escaped
    assert "&lt;img src=x onerror=&#34;window.__pwned=1&#34;&gt;" in html


def test_item_json_is_inert_and_round_trips(small_results):
    results = with_payloads(small_results)
    html = make_report(results)
    (_, payload), _ = scripts(html)
    assert not set(payload) & {"<", ">", "&", "\u2028", "\u2029"}
    assert "\\u003c/script\\u003e" in payload and "\\u2028" in payload
    assert json.loads(payload) == json.loads(json.dumps(explorer_data(results["items"])))


def test_non_finite_scores_and_missing_ranks_still_render(small_results):
    item = small_results["items"][0]
    item["compressed"]["mc"]["scores"][0] = float("-inf")
    item["compressed"]["gold_rank"] = None
    del item["aliases"]
    (_, payload), _ = scripts(make_report(small_results))
    first = json.loads(payload)["items"][0]
    assert first["compressed"]["mc"]["scores"][0] == "-∞" and first["aliases"] == []


def test_gates_verdicts(small_results):
    html = make_report(small_results)
    failed = sum(not g["passed"] for g in small_results["gates"])
    assert failed and f"FAIL: {failed} of {len(small_results['gates'])} gates failed" in html
    assert html.count('class="result">FAIL<') == failed
    small_results["gates"] = []
    assert "no gates configured" in make_report(small_results)


def test_no_both_correct_items():
    results = make_results(("sw",), items_per_language=20, n_resamples=10,
                           profiles={"sw": LangProfile(0.0, 0.5, 0.3, 0.1)})
    assert results["summary"]["overall"]["n_both_correct"] == 0
    html = make_report(results)
    assert "no both-correct items" in html
    assert "so compression fates cannot be tracked" in html


def test_bad_input_names_the_field(small_results):
    with pytest.raises(ValueError, match="schema"):
        make_report({**small_results, "schema": "other/v9"})
    with pytest.raises(ValueError, match="'summary'"):
        make_report({k: v for k, v in small_results.items() if k != "summary"})
    del small_results["config"]["dataset"]["distractors"]
    with pytest.raises(jinja2.UndefinedError, match="distractors"):
        make_report(small_results)


def test_sweep_section_only_with_a_sweep(small_results):
    assert 'id="sweep"' not in make_report(small_results)
    others = [make_results(("ar", "en", "sw"), 60, n_resamples=20, spec=spec, severity=sev)
              for spec, sev in (("wanda:0.7", 1.6), ("wanda:0.3", 0.4))]
    html = make_report(small_results, others)
    assert 'id="sweep"' in html and "(this run)" in html
    table = html[html.index('id="sweep"'):html.index('id="explorer"')]
    assert table.index("wanda:0.3") < table.index("wanda:0.5") < table.index("wanda:0.7")
    for n in range(3):
        assert f'id="fig-sweep-{n}"' in html
    # Each spec against the next less compressed one: 0.5 against 0.3, 0.7 against 0.5, per language and overall.
    steps = html[html.index('id="sweep-steps"'):html.index("</table>", html.index('id="sweep-steps"'))]
    assert steps.count('<th scope="row">wanda:0.5</th><td>wanda:0.3</td>') == 4
    assert steps.count('<th scope="row">wanda:0.7</th><td>wanda:0.5</td>') == 4
    quantized = make_results(("ar", "en", "sw"), 60, n_resamples=10, spec="rtn-int4")
    assert 'id="sweep-steps"' not in make_report(small_results, [quantized])  # no sparsity to step along


def test_sweep_must_share_reference_and_dataset(small_results):
    other = make_results(("ar", "en", "sw"), 60, n_resamples=10, spec="wanda:0.7")
    other["config"]["reference"]["name"] = "another-model"
    with pytest.raises(ValueError, match=r"sweep\[0\]: config.reference.name"):
        make_report(small_results, [other])
    same_spec = make_results(("ar", "en", "sw"), 60, n_resamples=10)
    with pytest.raises(ValueError, match="spec 'wanda:0.5' with calibration 'english' appears more than once"):
        make_report(small_results, [same_spec])


def test_write_report_is_atomic(tmp_path, small_results):
    out = tmp_path / "report.html"
    write_report(out, small_results)
    assert out.read_text(encoding="utf-8") == make_report(small_results)
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o644)
    before = out.read_bytes()
    with pytest.raises(ValueError):
        write_report(out, {**small_results, "schema": "nope"})
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_payload_constants_cover_the_brief():
    joined = "".join(XSS_PAYLOADS)
    for needle in ("<script>", "</textarea>", "onerror=", '"', "'", "\u2028", "\u2029", "&"):
        assert needle in joined


def test_script_builds_the_dom_from_text_only():
    from importlib import resources

    js = resources.files("illusion_checks.report").joinpath("report.js").read_text("utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"on", "srcdoc"):
        assert sink not in js, sink


def test_run_without_search_probes_and_one_language():
    results = make_results(("sw",), items_per_language=40, n_resamples=10, search_items=0)
    html = make_report(results)
    assert "Beam search and sampling were not run." in html
    assert 'data-metric="acc.compressed.beam" data-lang="sw">n/a<' in html
    assert "in sw" in html and "did not run to confirm" in html


def test_notes_are_listed_near_the_top_and_escaped(small_results):
    results = with_payloads(small_results)
    html = make_report(results)
    assert html.index('id="gates"') < html.index('id="notes"') < html.index('id="findings"')
    notes = html[html.index('id="notes"'):html.index('id="findings"')]
    assert notes.count("<li") == len(results["notes"]) == 1
    assert "calibration file &lt;script&gt;window.__pwned=1&lt;/script&gt; has 3 samples" in notes
    assert "<script>window" not in html
    del small_results["notes"]  # results written before notes existed
    assert 'id="notes"' not in make_report(small_results)
    with pytest.raises(ValueError, match="field 'notes'"):
        make_report({**small_results, "notes": ["a bare string"]})


def test_rank_not_interpretable_and_missing_one_shot_read_plainly():
    profile = dataclasses.replace(PROFILES["sw"], begins_with_gold=0.2, has_exemplar=False)
    results = make_results(("en", "sw"), 40, n_resamples=10, profiles={"sw": profile})
    s = results["summary"]["per_language"]["sw"]
    assert s["rank_interpretable"] is False and s["acc"]["reference"]["one_shot"] is None
    html = make_report(results)

    # Fig. 3: en and the pooled overall are plotted, sw is a sentence with its counts.
    ref = s["answer_start"]["reference"]
    rank_titles = re.findall(r'id="fig-ranks-\d+">\s*<figcaption><span class="chart-title">([^<]*)<', html)
    assert rank_titles == ["en", "overall (en)"]
    assert (f'<li data-lang="sw">sw: the gold rank is not interpretable for this model and prompt: only '
            f"{ref['share']:.0%} ({ref['n_begins_with_gold']} of {ref['n_ff_correct']}) of the reference&#39;s") in html
    assert f'data-metric="answer_start.reference.share" data-lang="sw">{ref["share"]:.0%}<' in html

    # Table 1: n/a for sw, and why (with the run's note in the Notes section).
    assert 'data-metric="acc.reference.one_shot" data-lang="sw">n/a<' in html
    assert 'data-metric="prune_gap.one_shot" data-lang="sw">n/a<' in html
    assert "n/a for sw: the 1-shot probe did not run there, because no exemplar was available" in html
    (one_shot_note,) = results["notes"]
    assert one_shot_note["kind"] == "one_shot" and one_shot_note["message"] in html


def test_truncation_rates_sit_beside_the_fates(small_results):
    """The passages cut per prompt kind and the items whose gold was cut away, per language: taken from
    the outcomes' truncation records, the cut-gold item left out of both-correct (and the table)."""
    from illusion_checks.metrics import item_fate, summarize

    items = small_results["items"]
    lang = items[0]["lang"]
    mine = [item for item in items if item["lang"] == lang]
    before = summarize(items, n_resamples=0)["per_language"][lang]["n_both_correct"]
    cut_was_both_correct = item_fate(mine[0])[0]
    for k, item in enumerate(mine):
        for role in ("reference", "compressed"):
            item[role]["truncation"] = {"ff": {"cut": k < 6, "gold_kept": k != 0},
                                        "cs": {"cut": k < 6, "gold_kept": k != 0, "same_as_ff": k != 1},
                                        "zero_shot_short": {"cut": False, "gold_kept": True}}
    small_results["summary"] = summarize(items, n_resamples=10)
    block = small_results["summary"]["per_language"][lang]
    assert block["truncation"]["reference"]["ff"] == pytest.approx(6 / len(mine))
    assert cut_was_both_correct and block["n_both_correct"] == before - 1
    html = make_report(small_results)
    table = html[html.index('id="truncation"'):html.index("</table>", html.index('id="truncation"'))]
    row = table[table.index(f'<th scope="row">{lang}</th>'):]
    row = row[:row.index("</tr>")]
    assert f'data-metric="truncation.reference.ff" data-lang="{lang}">{round(600 / len(mine))}%<' in row
    assert f'data-metric="truncation.gold_cut" data-lang="{lang}">1<' in row
    assert f'data-metric="truncation.reference.cs_passage_differs" data-lang="{lang}">1<' in row
    assert 'id="truncation"' not in make_report(_without_truncation(small_results))


def _without_truncation(results):
    from illusion_checks.metrics import summarize

    for item in results["items"]:
        for role in ("reference", "compressed"):
            item[role].pop("truncation", None)
    return {**results, "summary": summarize(results["items"], n_resamples=10)}


def test_paired_tests_and_gates_decided_by_noise():
    from illusion_checks.api import apply_gates
    from illusion_checks.spec import GateSpec

    hostile = XSS_PAYLOADS[0]
    results = make_results(("en", hostile), items_per_language=30, n_resamples=10, gates=False)
    gates = apply_gates(results, GateSpec(max_dissociation=0.15, min_retention=0.1))
    html = make_report(results)
    tests = results["summary"]["per_language"]["en"]["mcnemar"]["ff"]
    assert f'<td data-metric="mcnemar.ff.drops" data-lang="en">{tests["drops"]}</td>' in html
    assert f'<td data-metric="mcnemar.ff.p_value" data-lang="en">{tests["p_value"]:.2g}</td>' in html
    assert html.count('class="detectable"') == len(gates)
    warnings = [gate.noise_warning() for gate in gates if gate.noise_warning()]
    start = html.index('id="noise-warnings"')
    listed = html[start:html.index("</ul>", start)]
    assert listed.count("<li>") == len(warnings) == 3  # dissociation in en, the hostile language and overall
    assert "<script>window" not in listed and "&lt;script&gt;window.__pwned=1&lt;/script&gt;: " in listed
