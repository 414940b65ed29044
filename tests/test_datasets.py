"""Data in: fixture JSONL, SQuAD JSON, language selection, the fixed per-language sample."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import illusion_checks.datasets
from illusion_checks.datasets import (
    DatasetError, QAItem, exemplar_for, fixture_files, load_dataset, load_path, sample_items, select_langs,
)


def _squad(path, lang_items):
    data = {"data": [{"title": "t", "paragraphs": [
        {"context": ctx, "qas": [{"id": qid, "question": q, "answers": [{"text": a, "answer_start": 0} for a in answers]}]}
        for qid, ctx, q, answers in lang_items]}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_fixture_set_has_five_plus_languages_with_sixty_items_and_non_latin_scripts():
    dataset = load_dataset("fixtures")
    assert len(dataset.by_lang) >= 5 and "en" in dataset.by_lang
    assert all(len(items) >= 60 for items in dataset.by_lang.values())
    assert {"ar", "ru", "zh"} & set(dataset.by_lang)
    for items in dataset.by_lang.values():
        for item in items:
            assert item.gold in item.context and all(alias in item.context for alias in item.aliases)


def test_squad_language_from_suffix_and_explicit_lang(tmp_path):
    path = _squad(tmp_path / "xquad.de.json", [("q1", "Berlin ist groß.", "Was?", ["Berlin", "Berlin", "Berlin ist"])])
    items = load_path(str(path)).by_lang["de"]
    assert items == [QAItem("q1", "de", "Berlin ist groß.", "Was?", "Berlin", ("Berlin ist",))]
    plain = _squad(tmp_path / "data.json", [("q1", "Paris.", "Where?", ["Paris"])])
    assert list(load_path(f"{plain}:fr").by_lang) == ["fr"]
    with pytest.raises(DatasetError, match=r"data\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: field 'id' is 'q1', which "
                                           r"names no TyDiQA language .*name the file '<name>\.<lang>\.json' or pass PATH:LANG"):
        load_path(str(plain))


def test_tydiqa_goldp_in_its_official_shape_takes_each_questions_language_from_its_id(tmp_path):
    """TyDiQA GoldP's dev file as Google distributes it (`tydiqa-goldp-v1.1-dev.json`: SQuAD-shaped, one
    file for every language, ids prefixed by the language's name); English is one language among them."""
    path = _squad(tmp_path / "tydiqa-goldp-v1.1-dev.json", [
        ("arabic-2387335860751143628-1", "القاهرة عاصمة مصر.", "ما عاصمة مصر؟", ["القاهرة"]),
        ("swahili--1151049315396458489-0", "Nairobi ni mji mkuu wa Kenya.", "Mji mkuu wa Kenya ni upi?", ["Nairobi"]),
        ("telugu--5386212658813046386-1", "హైదరాబాద్ తెలంగాణ రాజధాని.", "తెలంగాణ రాజధాని ఏది?", ["హైదరాబాద్"]),
        ("english-6000979580098137346-0", "Paris is the capital of France.", "What is the capital of France?", ["Paris"]),
        ("bengali--5937151397347040829-0", "ঢাকা বাংলাদেশের রাজধানী।", "বাংলাদেশের রাজধানী কোনটি?", ["ঢাকা"]),
    ])
    dataset = load_dataset(str(path))
    assert sorted(dataset.by_lang) == ["ar", "bn", "en", "sw", "te"]
    assert dataset.by_lang["sw"] == [QAItem("swahili--1151049315396458489-0", "sw", "Nairobi ni mji mkuu wa Kenya.",
                                            "Mji mkuu wa Kenya ni upi?", "Nairobi")]
    assert select_langs(dataset, ["ar", "sw", "te"]) == ["ar", "sw", "te"]  # English not required


def test_directory_of_squad_files_loads_one_language_per_file(tmp_path):
    _squad(tmp_path / "x.en.json", [("a", "Paris is big.", "What?", ["Paris"])])
    _squad(tmp_path / "x.ru.json", [("b", "Москва большая.", "Что?", ["Москва"])])
    assert sorted(load_path(str(tmp_path)).by_lang) == ["en", "ru"]


@pytest.mark.parametrize("line, field", [
    ('{"id": "x", "lang": "en", "context": "c", "question": "q"}', "answer"),
    ('{"id": "x", "lang": "en", "context": "c", "question": "q", "answer": ""}', "answer"),
    ('{"id": "x", "lang": "en", "context": "c", "question": "q", "answer": "a", "aliases": "b"}', "aliases"),
    ('[1, 2]', "object"),
    ('{not json', "not valid JSON"),
])
def test_bad_jsonl_names_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "ok", "lang": "en", "context": "c", "question": "q", "answer": "a"}\n' + line + "\n")
    with pytest.raises(DatasetError) as error:
        load_path(str(path))
    assert f"{path} line 2" in str(error.value) and field in str(error.value)


def test_unknown_language_lists_the_available_ones():
    dataset = load_dataset("fixtures")
    with pytest.raises(DatasetError, match=r"xx not in data set 'fixtures', which has .*en"):
        select_langs(dataset, ["en", "xx"])


def test_the_fixture_set_is_package_data_that_loads_from_a_zip(tmp_path):
    package = Path(illusion_checks.datasets.__file__).parent
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zipped.write(path, path.relative_to(package.parent).as_posix())
    # -S: no site-packages, so neither the checkout nor its editable install is importable; only the zip is.
    code = ("import json, illusion_checks.datasets as d; data = d.load_dataset('fixtures'); "
            "print(json.dumps([d.__file__, str(d.fixture_root()), data.sha256]))")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(archive)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    module, root, sha256 = json.loads(proc.stdout)
    assert module.startswith(str(archive)) and root == f"{archive}/illusion_checks/data/qa/"
    assert sha256 == load_dataset("fixtures").sha256
    assert [path.name for path in fixture_files()] == ["ar.jsonl", "de.jsonl", "en.jsonl", "es.jsonl", "hi.jsonl",
                                                       "ru.jsonl", "zh.jsonl"]


def test_a_missing_fixture_set_says_so_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(illusion_checks.datasets, "fixture_root", lambda: tmp_path / "qa")
    with pytest.raises(DatasetError, match=r"embedded fixture set is missing: no \.jsonl files at .*qa; reinstall"):
        load_dataset("fixtures")


def test_missing_path_is_a_clear_error():
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("no/such/file.jsonl")


def test_sample_is_an_independent_random_42_shuffle_per_language():
    items = load_dataset("fixtures").by_lang["en"]
    expected = list(items)
    random.Random(42).shuffle(expected)
    assert sample_items(items, 10, 42) == expected[:10]
    assert sample_items(items, 10, 42) == sample_items(list(items), 10, 42)  # no shared RNG state
    assert sample_items(items, 10, 7) != expected[:10]


def test_exemplar_is_lowest_index_item_not_evaluated():
    items = load_dataset("fixtures").by_lang["de"]
    evaluated = [items[0], items[1], items[3]]
    assert exemplar_for(items, evaluated) == items[2]


def _squad_doc(**overrides):
    """A two-paragraph SQuAD document whose second paragraph's third question is the one under test."""
    qas = [{"id": f"q{k}", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 0}]} for k in range(3)]
    qas[2].update(overrides)
    return {"data": [{"title": "t", "paragraphs": [
        {"context": "Paris is big.", "qas": [{"id": "p0", "question": "What?", "answers": [{"text": "Paris"}]}]},
        {"context": "Paris is big.", "qas": qas},
    ]}]}


@pytest.mark.parametrize("document, where, expected", [
    (_squad_doc(id=None), "data[0].paragraphs[1].qas[2]", "field 'id' must be a non-empty string, got None"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q", "answers": [{"text": "c"}]}]}]}]},
     "data[0].paragraphs[0].qas[0]", "field 'id' is missing"),
    (_squad_doc(answers="Paris"), "data[0].paragraphs[1].qas[2]", "field 'answers' must be a list, got 'Paris'"),
    (_squad_doc(answers=["Paris"]), "data[0].paragraphs[1].qas[2].answers[0]", "must be an object, got 'Paris'"),
    (_squad_doc(question=["Where?"]), "data[0].paragraphs[1].qas[2]", "field 'question' must be a non-empty string, got ['Where?']"),
    ({"data": [{"paragraphs": "Paris is big."}]}, "data[0]", "field 'paragraphs' must be a list, got 'Paris is big.'"),
    ({"data": [{"paragraphs": [{"context": ["Paris"], "qas": []}]}]}, "data[0].paragraphs[0]",
     "field 'context' must be a non-empty string, got ['Paris']"),
    ({"data": {"paragraphs": []}}, "top level", "field 'data' must be a list, got {'paragraphs': []}"),
    ({"data": ["Paris"]}, "data[0]", "must be an object, got 'Paris'"),
], ids=["id-null", "id-missing", "answers-string", "answer-string", "question-list", "paragraphs-string",
        "context-list", "data-object", "article-string"])
def test_malformed_squad_json_names_file_json_path_field_and_value(tmp_path, document, where, expected):
    path = tmp_path / "bad.en.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(DatasetError) as error:
        load_path(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: {where}: "), message
    assert expected in message and "\n" not in message


def test_squad_numeric_ids_still_load(tmp_path):
    path = tmp_path / "x.en.json"
    path.write_text(json.dumps(_squad_doc(id=7)), encoding="utf-8")
    assert [item.id for item in load_path(str(path)).by_lang["en"]] == ["p0", "q0", "q1", "7"]
