"""The sweep section of a search run: what the search evaluated, what it chose, where passing was
not monotone, each spec's gates and the compressed model's accuracy by spec; all of it escaped."""

from __future__ import annotations

import copy
import functools
import html as html_lib
import re
from typing import Any

from illusion_checks.report import make_report
from illusion_checks.report.formats import pct
from tests.helpers.synth import make_results

LANGS = ("ar", "en", "sw")
# (spec, severity, gates pass): the levels a bisection over wanda:0.3..0.8 ran.
LEVELS = (("wanda:0.3", 0.4, True), ("wanda:0.55", 1.0, True), ("wanda:0.6", 1.2, False),
          ("wanda:0.8", 1.8, False))
EVALUATED = ["wanda:0.3", "wanda:0.8", "wanda:0.55", "wanda:0.6"]
VIOLATION = "wanda:0.6 passes but the lower wanda:0.55 fails: dissociation ar"
HOSTILE = "<script>window.__pwned=1</script>"


@functools.cache
def _runs() -> dict[str, dict[str, Any]]:
    runs = {}
    for spec, severity, passes in LEVELS:
        run = make_results(LANGS, 40, n_resamples=10, spec=spec, severity=severity)
        for n, gate in enumerate(run["gates"]):
            gate["passed"] = passes or n != 0  # a failing level fails (at least) its first gate
        runs[spec] = run
    return runs


def runs() -> dict[str, dict[str, Any]]:
    return copy.deepcopy(_runs())


def search_dict(best: str | None = "wanda:0.55", violations: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"method": "wanda", "low": 0.3, "high": 0.8, "step": 0.05,
            "levels": [{"spec": spec, "level": float(spec.split(":")[1]), "passed": passes}
                       for spec, _, passes in LEVELS],
            "evaluated": list(EVALUATED), "best": best, "monotonicity_violations": list(violations)}


def render(search: dict[str, Any], main: str = "wanda:0.55") -> str:
    by_spec = runs()
    return make_report(by_spec.pop(main), list(by_spec.values()), search=search)


def section(page: str) -> str:
    return re.search(r'<section id="sweep".*?</section>', page, re.S).group(0)


def search_levels(page: str) -> list[tuple[str, str]]:
    block = re.search(r'<ol class="search-levels">(.*?)</ol>', page, re.S).group(1)
    return re.findall(r'<li><code>(.*?)</code> <span class="badge gates-(\w+)">', block)


def table_rows(page: str) -> dict[str, str]:
    body = re.search(r"<tbody>(.*?)</tbody>", section(page), re.S).group(1)
    return {re.match(r'<tr[^>]*><th scope="row">([^ <]+)', row).group(1): row
            for row in re.findall(r"<tr.*?</tr>", body, re.S)}


def chart(page: str, chart_id: str) -> str:
    return re.search(rf'<figure class="chart" id="{chart_id}">.*?</figure>', page, re.S).group(0)


def test_search_block_lists_levels_in_evaluation_order_with_pass_fail():
    page = render(search_dict())
    assert 'id="sweep-search"' in section(page)
    assert "<code>wanda:0.3..0.8, step 0.05</code>" in page
    assert search_levels(page) == [("wanda:0.3", "pass"), ("wanda:0.8", "fail"), ("wanda:0.55", "pass"),
                                   ("wanda:0.6", "fail")]


def test_search_names_the_chosen_level_in_the_block_and_the_table():
    page = render(search_dict())
    best = re.search(r'<dd id="search-best">(.*?)</dd>', page, re.S).group(1)
    assert best == "<code>wanda:0.55</code>"
    rows = table_rows(page)
    assert list(rows) == ["wanda:0.3", "wanda:0.55", "wanda:0.6", "wanda:0.8"]
    assert [spec for spec, row in rows.items() if "badge-chosen" in row] == ["wanda:0.55"]
    assert "(this run)" in rows["wanda:0.55"]
    for spec, _, passes in LEVELS:
        assert f'<span class="badge gates-{"pass" if passes else "fail"}">' in rows[spec]


def test_search_without_a_passing_level_says_none():
    page = render(search_dict(best=None), main="wanda:0.3")
    best = re.search(r'<dd id="search-best">(.*?)</dd>', page, re.S).group(1)
    assert best == "none: even the lowest level fails its gates"
    assert "badge-chosen" not in section(page)
    assert "(this run)" in table_rows(page)["wanda:0.3"]


def test_search_shows_each_monotonicity_violation_as_a_warning():
    page = render(search_dict(violations=(VIOLATION, "second one")))
    warnings = re.search(r'<ul class="search-violations">(.*?)</ul>', page, re.S).group(1)
    assert re.findall(r"<li>(.*?)</li>", warnings) == [f"Warning: {VIOLATION}", "Warning: second one"]
    assert 'class="search-violations"' not in render(search_dict())


def test_hostile_specs_and_violations_are_escaped():
    by_spec = runs()
    by_spec["wanda:0.8"]["config"]["compressed"]["spec"] = HOSTILE
    search = search_dict(best=HOSTILE, violations=(f"{HOSTILE} passes & <b>x</b>",))
    search["evaluated"][1] = HOSTILE
    search["levels"][3]["spec"] = HOSTILE
    search["method"] = HOSTILE
    page = make_report(by_spec.pop("wanda:0.55"), list(by_spec.values()), search=search)
    body = section(page)
    assert "<script" not in body and "<b>" not in body
    escaped = html_lib.escape(HOSTILE, quote=False)
    assert escaped in re.search(r'<ol class="search-levels">(.*?)</ol>', body, re.S).group(1)
    assert f"<li>Warning: {escaped} passes &amp; &lt;b&gt;x&lt;/b&gt;</li>" in body
    assert search_levels(page)[1] == (escaped, "fail")
    # the hostile run is chosen (its spec matches best) and labelled escaped in table and charts
    assert "badge-chosen" in body and f'data-spec="{html_lib.escape(HOSTILE)}"' in body


def test_ff_and_mc_accuracy_charts_have_one_row_per_spec():
    by_spec = runs()
    page = render(search_dict())
    for chart_id, probe in (("fig-sweep-3", "ff"), ("fig-sweep-4", "mc")):
        fig = chart(page, chart_id)
        values = dict(re.findall(rf'data-metric="acc.compressed.{probe}" data-spec="([^"]+)">([^<]+)<', fig))
        assert values == {spec: pct(by_spec[spec]["summary"]["overall"]["acc"]["compressed"][probe], 1)
                          for spec, _, _ in LEVELS}
        assert f"{probe.upper()} accuracy" in fig
        assert "no 95% interval for accuracy" in fig and 'class="whisker"' not in fig
    for n in range(3):  # the metric charts keep their intervals
        assert 'class="whisker"' in chart(page, f"fig-sweep-{n}")


def test_a_search_of_one_level_still_gets_a_section():
    search = {**search_dict(), "levels": [{"spec": "wanda:0.55", "level": 0.55, "passed": True}],
              "evaluated": ["wanda:0.55"]}
    page = make_report(runs()["wanda:0.55"], search=search)
    assert search_levels(page) == [("wanda:0.55", "pass")]
    assert list(table_rows(page)) == ["wanda:0.55"]


def test_without_a_search_the_section_has_no_search_parts_but_the_accuracy_charts():
    by_spec = runs()
    page = make_report(by_spec.pop("wanda:0.55"), list(by_spec.values()))
    body = section(page)
    for absent in ('id="sweep-search"', "badge"):
        assert absent not in body
    for present in ('id="fig-sweep-2"', 'id="fig-sweep-3"', 'id="fig-sweep-4"'):
        assert present in body
