"""The A/A noise floor (`--illusion-noise-floor`): the reference probed again at another batch size
and item order, read against itself; 0 fate changes on the CPU in float32."""

from __future__ import annotations

from pathlib import Path

import pytest

from illusion_checks import EvaluationSpec, evaluate
from illusion_checks.noise_floor import check, describe, noise_floor, other_batch_size
from illusion_checks.records import ItemRecord
from illusion_checks.report.render import make_report
from illusion_checks.results import validate
from tests.helpers.synth import make_results


def test_the_floor_counts_the_fates_summarize_counts():
    """Guards the counting: read as (first run, second run) pairs, the floor's changed items are the
    both-correct items the summary does not call kept, per language and overall."""
    results = make_results(langs=("en", "sw"), items_per_language=40, gates=False)
    pairs = [ItemRecord.from_dict(item) for item in results["items"]]
    floor = noise_floor(pairs, batch_size=8)
    for lang, block in [*floor["per_language"].items(), ("overall", floor)]:
        summary = results["summary"]
        stats = summary["overall"] if lang == "overall" else summary["per_language"][lang]
        fates = stats["fates"]
        assert block["n"] == stats["n_both_correct"]
        assert block["changed"] == fates["mc_only"] + fates["produced_only"] + fates["lost"] > 0
        assert block["rate"] == pytest.approx(block["changed"] / block["n"])
    assert check(floor) == []
    assert "changed fate" in describe(floor) and describe(None) is None


def test_a_malformed_block_is_named_field_by_field():
    assert check({"changed": 3, "n": 2, "outputs_changed": 0, "items": 4}) == [
        "noise_floor: field 'changed' (3) exceeds 'n' (2)"]
    assert check({"changed": -1, "n": 2, "outputs_changed": 0, "items": 4,
                  "per_language": {"en": {"changed": 0, "n": "2", "outputs_changed": 0, "items": 4}}}) == [
        "noise_floor: field 'changed' must be a count >= 0",
        "noise_floor.per_language.en: field 'n' must be a count >= 0"]
    assert other_batch_size(16) == 8 and other_batch_size(1) == 2


def _floor_run(model: str, tmp_path: Path, items: int) -> dict:
    spec = EvaluationSpec(model=model, compressed=model, langs=("en",), items=items, device="cpu", dtype="float32",
                          no_reachability=True, noise_floor=True, batch_size=4, cache_dir=str(tmp_path / "cache"))
    return evaluate(spec).results


def test_a_tiny_model_has_no_noise_floor_on_the_cpu_and_the_report_shows_it(taught_model, tmp_path):
    """Guards the wiring end to end: the second run really runs at another batch size with the items
    reversed (a misaligned reversal would pair different items and change fates), the results hold a
    valid block, and the report shows it beside the dissociation."""
    directory = tmp_path / "taught"
    taught_model.model.save_pretrained(str(directory))
    taught_model.tokenizer.save_pretrained(str(directory))
    results = _floor_run(str(directory), tmp_path, items=6)
    floor = results["noise_floor"]
    assert floor["batch_size"] == 2 and floor["order"] == "reversed"
    assert floor["n"] == results["summary"]["overall"]["n_both_correct"] > 0
    assert (floor["changed"], floor["outputs_changed"]) == (0, 0)
    assert validate(results) == []
    html = make_report(results)
    assert 'id="noise-floor"' in html and f"{floor['changed']} of {floor['n']}" in html


@pytest.mark.slow
def test_smollm2_in_float32_on_the_cpu_has_a_zero_noise_floor(embedded_model, tmp_path):
    """The README's batch-size invariance on a real model: SmolLM2's reference probed again at batch
    size 2 with its items reversed changes no fate, no greedy FF output, MC choice or gold rank."""
    embedded_model("smollm2-135m")  # converted once per session, or skipped (failed under CI)
    floor = _floor_run("smollm2-135m", tmp_path, items=5)["noise_floor"]
    assert floor["items"] == 5 and floor["n"] > 0
    assert (floor["changed"], floor["outputs_changed"]) == (0, 0)
