"""Typed records of the results contract: exact round trips (key order counts), older v1 files, errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from illusion_checks import records as rec
from illusion_checks import results as R
from illusion_checks.fates import Fate
from illusion_checks.gates import Gate, evaluate_gates
from illusion_checks.metrics import summarize
from illusion_checks.records import (ABSENT, FFGeneration, Generation, GoldToken, ItemRecord, LanguageSummary,
                                     MCChoice, Note, OneShot, Outcome, PathStep, Reach)
from tests.helpers.synth import PROFILES, make_results, with_payloads

# A v1 file written before `gold_token`, `ff.begins_with_gold`, `mc.boundary_ok`, the 1-shot exemplar
# fields, `notes`, `dataset.items_by_language` and the summary's `answer_start`/`rank_interpretable`:
# six items of a real gemma3-270m run, with the summary that writer would have stored.
EARLY = Path(__file__).parent / "data" / "results_v1_early.json"


def dumped(value: Any) -> str:
    """What the writer puts in the file (key order included: no sort_keys)."""
    return json.dumps(value, ensure_ascii=False)


def summary_blocks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [*summary["per_language"].values(), summary["overall"]]


@pytest.fixture(scope="module")
def synthetic() -> dict[str, Any]:
    """Results with every null the writers produce: beam/sample on some items only, a language without
    a 1-shot exemplar (null `one_shot`, a note), hostile strings in every text field."""
    profiles = {"te": dataclasses.replace(PROFILES["te"], has_exemplar=False)}
    return with_payloads(make_results(["en", "sw", "te"], 12, seed=5, n_resamples=50, search_items=6,
                                      profiles=profiles))


@pytest.fixture()
def early() -> dict[str, Any]:
    return json.loads(EARLY.read_text(encoding="utf-8"))


def rebuilt(results: dict[str, Any]) -> dict[str, Any]:
    """The results with items, summary blocks, notes and gates written back from their records."""
    summary = results["summary"]
    out = {**results, "items": [ItemRecord.from_dict(item).to_dict() for item in results["items"]],
           "summary": {**summary, "overall": LanguageSummary.from_dict(summary["overall"]).to_dict(),
                       "per_language": {lang: LanguageSummary.from_dict(block).to_dict()
                                        for lang, block in summary["per_language"].items()}},
           "gates": [Gate.from_dict(gate).to_dict() for gate in results["gates"]]}
    if "notes" in results:
        out["notes"] = [Note.from_dict(entry).to_dict() for entry in results["notes"]]
    return out


# --- round trips ----------------------------------------------------------------------------------

def test_every_synthetic_item_round_trips_byte_for_byte(synthetic):
    items = synthetic["items"]
    outcomes = [item[model] for item in items for model in ("reference", "compressed")]
    assert any(o["beam"] is None for o in outcomes) and any(o["beam"] is not None for o in outcomes)
    assert any(o["one_shot"] is None for o in outcomes) and any(o["one_shot"] is not None for o in outcomes)
    assert any(item["fate"] is None for item in items) and any(item["fate"] is not None for item in items)
    for item in items:
        assert dumped(ItemRecord.from_dict(item).to_dict()) == dumped(item)


def test_summary_blocks_notes_and_the_whole_file_round_trip(synthetic):
    for block in summary_blocks(synthetic["summary"]):
        assert dumped(LanguageSummary.from_dict(block).to_dict()) == dumped(block)
    assert synthetic["notes"] and all(dumped(Note.from_dict(n).to_dict()) == dumped(n) for n in synthetic["notes"])
    written = {**synthetic, "gates": [Gate.from_dict(g).to_dict() for g in synthetic["gates"]]}
    assert dumped(rebuilt(written)) == dumped(written)


def test_a_reordered_or_dropped_key_is_caught_by_the_comparison(synthetic):
    """The round trips above compare JSON text, so a record writing its keys in another order (or
    leaving one out) fails them; so does any change to the declared key order."""
    item = synthetic["items"][0]
    written = ItemRecord.from_dict(item).to_dict()
    swapped = dict(reversed(list(written["reference"]["mc"].items())))
    assert dumped({**written, "reference": {**written["reference"], "mc": swapped}}) != dumped(item)
    assert dumped({k: v for k, v in written.items() if k != "aliases"}) != dumped(item)
    assert ItemRecord.keys() == ("id", "lang", "question", "context", "gold", "aliases", "options", "gold_index",
                                 "reference", "compressed", "both_correct", "fate")
    assert Outcome.keys() == ("ff", "cs", "mc", "gold_rank", "gold_margin", "gold_token", "gold_token_boundary_ok",
                              "beam", "sample", "one_shot", "zero_shot_short", "ablations", "unavailable",
                              "gold_rank_above", "truncation")
    assert FFGeneration.keys() == ("correct", "output", "f1", "em", "begins_with_gold")
    assert MCChoice.keys() == ("correct", "choice", "scores", "boundary_ok")
    assert GoldToken.keys() == ("id", "text", "offset", "conditioned_on", "source", "boundary_ok", "boundary_reason",
                                "path")
    assert OneShot.keys() == ("correct", "output", "exemplar_id", "exemplar_source")
    assert Reach.keys() == ("reached", "outputs", "distinct") and Note.keys() == ("kind", "lang", "message")
    assert PathStep.keys() == ("id", "text", "rank", "margin", "rank_above")


def test_summarize_builds_its_blocks_as_language_summaries(synthetic):
    summary = summarize(synthetic["items"], n_resamples=30, seed=2)
    for block in summary_blocks(summary):
        assert dumped(LanguageSummary.from_dict(block).to_dict()) == dumped(block)
    overall = LanguageSummary.from_dict(summary["overall"])
    assert overall.delta_pr_aggregation == "mean_over_languages"
    assert list(summary["overall"])[-1] == "delta_pr_aggregation"
    assert LanguageSummary.from_dict(summary["per_language"]["en"]).delta_pr_aggregation is ABSENT
    assert isinstance(summary["overall"]["dissociation_ci95"], list)


def test_constructed_records_write_what_the_probe_engine_writes():
    """The keyword API (JSON keys) gives the dict `probing.probe_model` / `item_record` write, in order."""
    outcome = Outcome(
        ff=FFGeneration(correct=True, output="Paris.", f1=1.0, em=True, begins_with_gold=True),
        cs=Generation(correct=True, output="Paris"),
        mc=MCChoice(correct=True, choice=1, scores=[-3.5, -0.25], boundary_ok=True),
        gold_rank=1, gold_margin=2.5, gold_token=None, gold_token_boundary_ok=False, beam=None,
        sample=Reach(reached=True, outputs=["Paris", "Lyon"]),
        one_shot=OneShot(correct=False, output="Lyon", exemplar_id="en-007", exemplar_source="fixtures"),
        zero_shot_short=Generation(correct=True, output="Paris"),
        ablations={"unrelated": Generation(correct=False, output="Rome")})
    record = ItemRecord(id="en-001", lang="en", question="Capital?", context="Paris is the capital.", gold="Paris",
                        aliases=[], options=["Lyon", "Paris"], gold_index=1, reference=outcome, compressed=outcome,
                        both_correct=True, fate="kept")
    expected_outcome = (
        '{"ff": {"correct": true, "output": "Paris.", "f1": 1.0, "em": true, "begins_with_gold": true}, '
        '"cs": {"correct": true, "output": "Paris"}, '
        '"mc": {"correct": true, "choice": 1, "scores": [-3.5, -0.25], "boundary_ok": true}, '
        '"gold_rank": 1, "gold_margin": 2.5, "gold_token": null, "gold_token_boundary_ok": false, "beam": null, '
        '"sample": {"reached": true, "outputs": ["Paris", "Lyon"]}, '
        '"one_shot": {"correct": false, "output": "Lyon", "exemplar_id": "en-007", "exemplar_source": "fixtures"}, '
        '"zero_shot_short": {"correct": true, "output": "Paris"}, '
        '"ablations": {"unrelated": {"correct": false, "output": "Rome"}}}')
    assert dumped(outcome.to_dict()) == expected_outcome
    written = record.to_dict()
    assert dumped(written) == (
        '{"id": "en-001", "lang": "en", "question": "Capital?", "context": "Paris is the capital.", "gold": "Paris", '
        '"aliases": [], "options": ["Lyon", "Paris"], "gold_index": 1, '
        f'"reference": {expected_outcome}, "compressed": {expected_outcome}, "both_correct": true, "fate": "kept"}}')
    assert type(written["fate"]) is str and record.fate is Fate.KEPT
    assert ItemRecord.from_dict(written) == record  # lists are held as tuples either way


def test_gates_round_trip_and_older_gates_without_a_reason_read_as_null(synthetic):
    gates = evaluate_gates(synthetic["summary"], {"*": 0.2, "xx": 0.1}, {"*": 0.3}, {"*": 0.5}, "ci95")
    assert any(g.reason for g in gates) and any(g.ci95 is not None for g in gates)
    for gate in gates:
        assert Gate.from_dict(gate.to_dict()) == gate
        assert dumped(Gate.from_dict(json.loads(dumped(gate.to_dict()))).to_dict()) == dumped(gate.to_dict())
    older = synthetic["gates"][0]
    assert "reason" not in older and Gate.from_dict(older).to_dict() == {**older, "reason": None, "mcnemar": None,
                                                                         "power": None}
    with pytest.raises(rec.ResultsError, match=r"^gates\[0\]: field 'direction' must be one of max, min, got 'up'"):
        Gate.from_dict({**older, "direction": "up"}, "gates[0]")
    with pytest.raises(rec.ResultsError, match=r"^gate: field 'ci95' must be a \[low, high\] pair of numbers or null"):
        Gate.from_dict({**older, "ci95": [0.1]})


# --- older v1 files -------------------------------------------------------------------------------

def test_an_early_v1_file_round_trips_with_its_absent_fields_left_absent(early):
    assert dumped(rebuilt(early)) == dumped(early)
    item = ItemRecord.from_dict(early["items"][0])
    assert item.reference.gold_token is ABSENT and item.reference.ff.begins_with_gold is ABSENT
    assert item.compressed.mc.boundary_ok is ABSENT and item.reference.one_shot.exemplar_id is ABSENT
    assert item.reference.gold_token_boundary_ok in (True, False)  # present in this file: kept
    assert "gold_token" not in item.to_dict()["reference"]
    block = LanguageSummary.from_dict(early["summary"]["overall"])
    assert block.answer_start is ABSENT and block.rank_interpretable is ABSENT
    assert "rank_interpretable" not in block.to_dict()


def test_an_early_v1_file_validates_and_still_summarizes(early, tmp_path):
    assert R.validate(early) == []
    fresh = R.checked_summary(early, "early.json")
    assert fresh["overall"]["n_items"] == 6 and fresh["overall"]["rank_interpretable"] is None
    for stored, recomputed in zip(summary_blocks(early["summary"]), summary_blocks(fresh)):
        assert {k: v for k, v in recomputed.items() if k not in ("answer_start", "rank_interpretable", "rank_boundary",
                                                                "mcnemar")} == stored
    assert R.load_results(EARLY)["items"] == early["items"]


def test_fields_validate_never_required_may_be_absent_too(early):
    """`aliases`, `ablations` and `gold_token_boundary_ok` were never required of a v1 file."""
    older = copy.deepcopy(early)
    for item in older["items"]:
        del item["aliases"]
        for model in ("reference", "compressed"):
            del item[model]["ablations"], item[model]["gold_token_boundary_ok"]
    for item in older["items"]:
        assert dumped(ItemRecord.from_dict(item).to_dict()) == dumped(item)
    assert R.validate(older) == [] and R.checked_summary(older)["overall"]["n_items"] == 6


def test_null_and_absent_are_told_apart(synthetic):
    item = copy.deepcopy(synthetic["items"][0])
    item["reference"]["gold_token"] = None
    del item["compressed"]["gold_token"]
    record = ItemRecord.from_dict(item)
    assert record.reference.gold_token is None and record.compressed.gold_token is ABSENT
    written = record.to_dict()
    assert written["reference"]["gold_token"] is None and "gold_token" not in written["compressed"]


def test_keys_a_newer_writer_added_are_kept_after_the_known_ones(synthetic):
    item = copy.deepcopy(synthetic["items"][0])
    item["reference"]["ff"]["newer_field"] = {"x": [1, 2.5]}
    item["note_for_later"] = "kept"
    record = ItemRecord.from_dict(item)
    assert record.reference.ff.extra == {"newer_field": {"x": [1, 2.5]}}
    assert dumped(record.to_dict()) == dumped(item)


# --- malformed input ------------------------------------------------------------------------------

def _set(path: str, value: Any):
    """A mutation setting (or, with ABSENT, deleting) the field at a dotted path of an item."""
    def apply(item: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        for name in parents:
            item = item[name]
        if value is ABSENT:
            del item[key]
        else:
            item[key] = value
    return apply


@pytest.mark.parametrize("mutate,message", [
    (_set("compressed.gold_rank", ABSENT), "compressed: missing field 'gold_rank'"),
    (_set("compressed.mc.scores", "x"), "compressed.mc: field 'scores' must be a list of numbers, got 'x'"),
    (_set("reference.ff.correct", "yes"), "reference.ff: field 'correct' must be true or false, got 'yes'"),
    (_set("reference.beam", []), "reference: field 'beam' must be an object or null, got []"),
    (_set("reference.gold_rank", True), "reference: field 'gold_rank' must be an integer or null, got True"),
    (_set("reference.gold_token.id", "7"), "reference.gold_token: field 'id' must be an integer, got '7'"),
    (_set("compressed.ablations", {"unrelated": {"correct": False}}),
     "compressed.ablations.unrelated: missing field 'output'"),
    (_set("compressed.unavailable", {"beam": 3}), "compressed: field 'unavailable' must be an object of strings"),
    (_set("compressed", 3), "compressed: expected an object"),
    (_set("fate", "weird"),
     ": 'fate' is 'weird', expected one of ['kept', 'mc_only', 'produced_only', 'lost'] or null"),
    (_set("gold_index", 9), ": 'gold_index' 9 does not index 'options'"),
    (_set("reference.mc.scores", [0.0]), "reference.mc: 'scores' must hold one score per option"),
])
def test_malformed_items_are_refused_naming_the_field_path(synthetic, mutate, message):
    """Messages start with the path of the record at fault below the item (`where` is the item's)."""
    message = "r.json: items[0]" + ("" if message.startswith(":") else ".") + message
    item = copy.deepcopy(synthetic["items"][0])
    mutate(item)
    with pytest.raises(R.ResultsError) as raised:
        ItemRecord.from_dict(item, "r.json: items[0]")
    assert str(raised.value).startswith(message)
    results = copy.deepcopy(synthetic)
    results["items"][0] = item
    assert R.validate(results, "r.json") == [str(raised.value)]


def test_one_error_class_and_one_schema_string():
    assert R.ResultsError is rec.ResultsError and issubclass(rec.ResultsError, ValueError)
    from illusion_checks.report import render
    assert R.SCHEMA is rec.SCHEMA is render.SCHEMA == "illusion-checks/results/v1"
    package = Path(rec.__file__).parent
    holders = [p.relative_to(package).as_posix() for p in sorted(package.rglob("*.py"))
               if '"illusion-checks/results/v1"' in p.read_text(encoding="utf-8")]
    assert holders == ["records.py"]
    with pytest.raises(R.ResultsError, match=r"^notes\[1\]: missing field 'kind'"):
        R.build_results({"seed": 1}, [], n_resamples=0, notes=[R.note("data", "en", "ok"), {"message": "m"}])


def test_build_results_takes_records_or_dicts_alike(synthetic):
    items, notes = synthetic["items"], synthetic["notes"]
    config = {"seed": 5, "created": "2026-01-01T00:00:00+00:00"}
    from_dicts = R.build_results(config, list(reversed(items)), n_resamples=20, notes=notes)
    from_records = R.build_results(config, [ItemRecord.from_dict(i) for i in items], n_resamples=20,
                                   notes=[Note.from_dict(n) for n in notes])
    assert dumped(from_records) == dumped(from_dicts)
    assert dumped(from_dicts["items"]) == dumped(items)


def test_records_need_no_engine():
    code = ("import sys, illusion_checks.records, illusion_checks.results, illusion_checks.metrics; "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]"
