"""Results out: schema validation, atomic writes, clear errors on bad files."""

from __future__ import annotations

import json

import pytest

from illusion_checks import results as R
from tests.synth import make_results


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
    R.write_json_atomic(path, {"ok": 1})
    with pytest.raises(TypeError):
        R.write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_build_results_sorts_items_and_summarises_them():
    items = make_results(["de", "en"], 4, 3)["items"]
    built = R.build_results({"seed": 42}, list(reversed(items)), n_resamples=20)
    assert [(i["lang"], i["id"]) for i in built["items"]] == sorted((i["lang"], i["id"]) for i in items)
    assert built["schema"] == R.SCHEMA and built["summary"]["overall"]["n_items"] == 8
