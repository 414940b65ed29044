"""The paired engine: same items and prompts for both models, fates, and a valid results JSON."""

from __future__ import annotations

import copy
import json

import pytest

from illusion_checks.datasets import load_dataset
from illusion_checks.engine import ProbeSettings, item_record, prepare_items, probe_model
from illusion_checks.metrics import recompute_check
from illusion_checks.probes import DecodeSettings
from illusion_checks.results import build_results, validate

SMALL = ProbeSettings(decode=DecodeSettings(max_new_tokens=6, num_beams=2, num_samples=2, batch_size=4),
                      items_per_language=3)


def test_prepared_items_are_the_same_fixed_subset_sorted_by_language_and_id():
    dataset = load_dataset("fixtures")
    first = prepare_items(dataset, ["en", "zh"], SMALL)
    assert first == prepare_items(dataset, ["zh", "en"], SMALL)
    assert [p.item.lang for p in first] == ["en"] * 3 + ["zh"] * 3
    for p in first:
        assert p.options[p.gold_index] == p.item.gold and len(p.options) == 4
        assert p.exemplar is not None and p.exemplar.id not in {q.item.id for q in first}


def test_ablation_candidates_never_include_the_gold():
    settings = ProbeSettings(items_per_language=5, ablations=("distractors_only", "unrelated"))
    for p in prepare_items(load_dataset("fixtures"), ["en", "de"], settings):
        assert p.item.gold not in p.ablation_candidates["distractors_only"]
        assert len(p.ablation_candidates["distractors_only"]) == 3
        assert p.item.gold not in p.ablation_candidates["unrelated"]


def test_tiny_model_outcomes_follow_the_schema_and_the_summary_recomputes(tiny_models):
    model, tokenizer = tiny_models["gemma3"]
    prepared = prepare_items(load_dataset("fixtures"), ["ar", "en"], SMALL)
    outcomes = probe_model(model, tokenizer, prepared, SMALL)
    items = [item_record(p, o, o) for p, o in zip(prepared, outcomes)]
    results = build_results({"reference": {"name": "tiny"}}, items, n_resamples=50)
    assert validate(results) == [] and recompute_check(results) == []
    for o in outcomes:
        assert 1 <= o["gold_rank"] <= len(tokenizer) and len(o["mc"]["scores"]) == 4
        assert len(o["beam"]["outputs"]) == 2 and len(o["sample"]["outputs"]) == 2
        assert o["mc"]["choice"] == max(range(4), key=o["mc"]["scores"].__getitem__)
    json.dumps(results)  # plain JSON all the way down


@pytest.mark.slow
def test_gemma_against_its_magnitude_pruned_copy_gives_valid_recomputable_results():
    from illusion_checks.compress import compress_model, parse_spec
    from illusion_checks.models import load_model

    loaded = load_model("gemma3-270m", device="cpu", dtype="float32")
    pruned = copy.deepcopy(loaded.model)
    compress_model(pruned, parse_spec("magnitude:0.5"))
    settings = ProbeSettings(items_per_language=4)
    prepared = prepare_items(load_dataset("fixtures"), ["en", "ru"], settings)
    reference = probe_model(loaded.model, loaded.tokenizer, prepared, settings)
    compressed = probe_model(pruned, loaded.tokenizer, prepared, settings)
    items = [item_record(p, r, c) for p, r, c in zip(prepared, reference, compressed)]
    results = build_results({"reference": {"name": "gemma3-270m"}, "compressed": {"spec": "magnitude:0.5"}}, items)
    assert validate(results) == []
    assert recompute_check(json.loads(json.dumps(results))) == []
    assert sum(r["ff"]["correct"] for r in reference) > 0, "gemma3-270m should answer some fixture items"
    assert reference != compressed
