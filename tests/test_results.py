"""Results out: schema validation, atomic writes, clear errors on bad files."""

from __future__ import annotations

import copy
import json

import pytest

from illusion_checks import results as R
from illusion_checks.atomic import write_json_atomic
from tests.helpers.synth import make_results


def test_synthetic_results_validate_and_a_broken_item_is_named():
    results = make_results(["en"], 5, 1)
    assert R.validate(results) == []
    del results["items"][2]["compressed"]["gold_rank"]
    results["items"][3]["gold_index"] = 9
    errors = R.validate(results)
    assert any("items[2].compressed: missing field 'gold_rank'" in e for e in errors)
    assert any("items[3]: 'gold_index' 9" in e for e in errors)


def test_load_results_names_the_file_and_problem(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{ truncated")
    with pytest.raises(R.ResultsError, match=rf"{path}: not valid JSON"):
        R.load_results(path)
    path.write_text(json.dumps({"schema": "other/v9"}))
    with pytest.raises(R.ResultsError, match="field 'schema' is 'other/v9'"):
        R.load_results(path)
    with pytest.raises(R.ResultsError, match="does not exist"):
        R.load_results(tmp_path / "missing.json")


def test_atomic_write_leaves_old_file_intact_when_serialisation_fails(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_build_results_sorts_items_and_summarises_them():
    items = make_results(["de", "en"], 4, 3)["items"]
    built = R.build_results({"seed": 42}, list(reversed(items)), n_resamples=20)
    assert [(i["lang"], i["id"]) for i in built["items"]] == sorted((i["lang"], i["id"]) for i in items)
    assert built["schema"] == R.SCHEMA and built["summary"]["overall"]["n_items"] == 8


@pytest.mark.parametrize("field", ["summary.per_language", "summary.overall", "config.dataset", "config.compressed",
                                   "config.reference", "config.dataset.langs", "config.compressed.spec"])
def test_validate_names_a_missing_field_the_report_and_terminal_read(field):
    results = make_results(["en"], 5, 1)
    *parents, key = field.split(".")
    block = results
    for name in parents:
        block = block[name]
    del block[key]
    assert R.validate(results, "r.json") == [f"r.json: missing field '{field}'"]


def test_validate_names_a_field_of_the_wrong_type():
    results = make_results(["en"], 5, 1)
    results["summary"]["per_language"]["en"] = 3
    results["config"]["dataset"]["langs"] = "en"
    assert R.validate(results, "r.json") == ["r.json: field 'config.dataset.langs' must be a list",
                                             "r.json: field 'summary.per_language.en' must be an object"]


def test_checked_summary_is_the_recomputed_one_and_fills_fields_older_writers_lacked():
    results = make_results(["en", "sw"], 6, 2, n_resamples=30)
    fresh = copy.deepcopy(results["summary"])
    del results["summary"]["overall"]["rank_interpretable"]
    assert R.checked_summary(results, "r.json") == fresh


def test_checked_summary_refuses_a_summary_or_fate_its_items_contradict():
    results = make_results(["en", "sw"], 6, 2, n_resamples=30)
    results["summary"]["per_language"]["sw"]["dissociation_rate"] = 0.0
    results["summary"]["per_language"]["sw"]["fates"]["kept"] += 7
    with pytest.raises(R.ResultsError, match=r"^r\.json: the stored summary does not match its items .*"
                                             r"summary\.per_language\.sw\.dissociation_rate: stored 0\.0 != "):
        R.checked_summary(results, "r.json")
    results = make_results(["en"], 6, 2, n_resamples=30)
    item = next(item for item in results["items"] if item["fate"] == "kept")
    item["fate"] = "lost"
    with pytest.raises(R.ResultsError, match=rf"items\[en/{item['id']}\]\.fate: stored 'lost' != recomputed 'kept'"):
        R.checked_summary(results, "r.json")


def test_checked_summary_names_items_it_cannot_summarise():
    results = make_results(["en"], 3, 2, n_resamples=10)
    results["items"][1]["compressed"]["ff"] = "yes"
    with pytest.raises(R.ResultsError, match=r"r\.json: cannot recompute the summary from its items \(.*'ff\.correct'"):
        R.checked_summary(results, "r.json")
