"""Data checks at load (illusion_checks/data/qa/README.md's rules, enforced by the loader and the run,
not only by check.py): golds that can never be scored, golds missing from their passage, languages
with fewer items than asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from illusion_checks.datasets import DatasetError, QAItem, load_path
from tests.helpers.plugin_runs import LOAD_COUNTER

PASSAGES = [
    ("Paris is the capital of France. It lies on the Seine.", "What is the capital of France?", "Paris"),
    ("The Danube flows through Vienna and Budapest.", "Which river flows through Vienna?", "The Danube"),
    ("Mount Fuji is 3776 metres high.", "How high is Mount Fuji in metres?", "3776"),
    ("The violin has four strings and a bow.", "How many strings has the violin?", "four"),
    ("Marie Curie won the Nobel Prize twice.", "Who won the Nobel Prize twice?", "Marie Curie"),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def en_rows(**changes: dict) -> list[dict]:
    """Five valid English items; `changes` maps an item id to the fields to override."""
    rows = [{"id": f"en-{k:03d}", "lang": "en", "context": c, "question": q, "answer": a, "aliases": []}
            for k, (c, q, a) in enumerate(PASSAGES, start=1)]
    for row in rows:
        row.update(changes.get(row["id"].replace("-", "_"), {}))
    return rows


@pytest.mark.parametrize("changes, field, value", [
    ({"en_002": {"answer": "?!"}}, "answer", "'?!'"),
    ({"en_004": {"aliases": ["four", "</textarea>"]}}, "aliases", "'</textarea>'"),
], ids=["answer-punctuation", "alias-markup"])
def test_jsonl_gold_that_normalizes_to_nothing_is_an_error(tmp_path, changes, field, value):
    path = write_jsonl(tmp_path / "bad.jsonl", en_rows(**changes))
    with pytest.raises(DatasetError) as error:
        load_path(str(path))
    message = str(error.value)
    item = next(iter(changes)).replace("_", "-")
    line = int(item[-3:])
    for part in (f"{path} line {line}", f"item '{item}'", f"field '{field}'", value, "empty"):
        assert part in message, (part, message)
    assert "\n" not in message


def test_squad_answer_that_normalizes_to_nothing_is_an_error(tmp_path):
    data = {"data": [{"paragraphs": [{"context": "It was loud.", "qas": [
        {"id": "x1", "question": "What?", "answers": [{"text": "loud"}, {"text": "!!!"}]}]}]}]}
    path = tmp_path / "bad.en.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DatasetError) as error:
        load_path(str(path))
    message = str(error.value)
    for part in (str(path), "data[0].paragraphs[0].qas[0].answers[1]", "item 'x1'", "field 'text'", "'!!!'", "empty"):
        assert part in message, (part, message)


def test_golds_missing_from_their_passage_are_listed():
    from illusion_checks.datasets import golds_not_in_context

    inside = QAItem("a", "en", "Paris is big.", "Where?", "Paris", ("big",))
    outside = QAItem("b", "en", "Paris is big.", "Where?", "Lyon")
    assert golds_not_in_context([inside, outside]) == [outside]


def test_strict_data_stops_a_gold_missing_from_its_passage_before_any_model_loads(pytester, tiny_llama_dir):
    pytester.makeconftest(LOAD_COUNTER)
    data = write_jsonl(pytester.path / "qa.jsonl", en_rows(en_003={"answer": "8848"}))
    result = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", "--illusion-compress=magnitude:0.5",
                                f"--illusion-dataset={data}", "--illusion-strict-data", "--illusion-no-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr.str(), result.stderr.str()
    for part in (str(data), "en-003", "'8848'", "not in its passage"):
        assert part in errors[0], (part, errors[0])
    assert not (pytester.path / "loads.txt").exists()


def test_missing_gold_and_short_language_are_noted_and_real_counts_reported(pytester, tiny_llama_dir):
    data = write_jsonl(pytester.path / "qa.jsonl", en_rows(en_003={"answer": "8848"}))
    result = pytester.runpytest(f"--illusion-model={tiny_llama_dir}", "--illusion-compress=magnitude:0.5",
                                f"--illusion-dataset={data}", "--illusion-items=8", "--illusion-no-cache",
                                "--illusion-no-reachability")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines([
        "illusion-checks: note: en: 1 evaluated item has a gold that is not in its passage (en-003)*",
        "illusion-checks: note: en: the data set has 5 items, fewer than --illusion-items=8; all 5 are evaluated",
    ])
    results = json.loads((pytester.path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))
    assert results["config"]["dataset"]["items_per_language"] == 8
    assert results["config"]["dataset"]["items_by_language"] == {"en": 5}
    assert {note["kind"] for note in results["notes"]} >= {"data"}
    report = (pytester.path / "reports" / "illusion-report.html").read_text(encoding="utf-8")
    assert "5 items per language" in report and "8 items per language" not in report
