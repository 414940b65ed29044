"""The paired engine: same items and prompts for both models, fates, and a valid results JSON."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from illusion_checks.backends.hf.backend import HFBackend
from illusion_checks.datasets import load_dataset
from illusion_checks.probing import PreparedItem, ProbeSettings, item_record, prepare_items, probe_model
from illusion_checks.fates import Fate
from illusion_checks.metrics import recompute_check
from illusion_checks.backends.base import DecodeSettings
from illusion_checks.results import build_results, validate
from illusion_checks.scoring import normalize_compact
from tests.helpers.engines import approx_gold_token
from tests.helpers.tiny import FIXTURES

def run_config(reference: str, spec: str, langs: list[str]) -> dict:
    """The `config` block a run writes (what `validate` requires of a results file)."""
    return {"reference": {"name": reference, "fingerprint": "sha256:test"},
            "compressed": {"name": f"{reference}+{spec}", "spec": spec, "calibration": None, "fingerprint": "sha256:test"},
            "dataset": {"name": "fixtures", "langs": langs, "items_per_language": 0, "distractors": "standard"},
            "seed": 42}


SMALL = ProbeSettings(decode=DecodeSettings(max_new_tokens=6, num_beams=2, num_samples=2, batch_size=4),
                      items_per_language=3)
# Room for the taught answers ("the Caspian Sea indeed" is 13 tokens of the tiny tokenizer).
TAUGHT = ProbeSettings(decode=DecodeSettings(max_new_tokens=16, num_beams=2, num_samples=2, batch_size=4),
                       items_per_language=6)


def assert_outcomes_consistent(prepared: list[PreparedItem], outcomes: list[dict]) -> None:
    """What holds for every outcome of any model: MC is right exactly when its argmax option is the
    gold (not when the gold token ranks first), and the token ranked from the gold is the gold's
    first content token, never another option's."""
    for p, o in zip(prepared, outcomes, strict=True):
        mc = o["mc"]
        assert mc["choice"] == max(range(4), key=mc["scores"].__getitem__)
        assert mc["correct"] == (mc["choice"] == p.gold_index), (p.item.id, mc, o["gold_rank"])
        token = o["gold_token"]
        if token is not None and token["source"] == "gold":
            assert normalize_compact(p.item.gold).startswith(normalize_compact(token["text"])), (p.item.id, token)


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
    outcomes = probe_model(HFBackend(model, tokenizer), prepared, SMALL)
    items = [item_record(p, o, o) for p, o in zip(prepared, outcomes)]
    results = build_results(run_config("tiny", "none", ["ar", "en"]), items, n_resamples=50)
    assert validate(results) == [] and recompute_check(results) == []
    for o in outcomes:
        assert 1 <= o["gold_rank"] <= len(tokenizer) and len(o["mc"]["scores"]) == 4
        assert len(o["beam"]["outputs"]) == 2 and len(o["sample"]["outputs"]) == 2
        assert o["mc"]["choice"] == max(range(4), key=o["mc"]["scores"].__getitem__)
    json.dumps(results)  # plain JSON all the way down


def test_a_taught_model_and_its_pruned_copy_give_real_fates(taught_model):
    """Guards the fates end to end on a model that really answers: both-correct exactly on the taught
    items, FF by containment, each fate from the compressed model's FF and MC, 90% pruning leaving
    mc_only items, and MC and the gold rank disagreeing both ways (they are different probes)."""
    from illusion_checks.compress import compress_model, parse_spec

    model, tokenizer, prepared = taught_model.model, taught_model.tokenizer, taught_model.prepared
    pruned = copy.deepcopy(model)
    compress_model(pruned, parse_spec("magnitude:0.9"))
    reference = probe_model(HFBackend(model, tokenizer), prepared, TAUGHT)
    compressed = probe_model(HFBackend(pruned, tokenizer), prepared, TAUGHT)
    assert_outcomes_consistent(prepared, reference)
    assert_outcomes_consistent(prepared, compressed)
    items = [item_record(p, r, c) for p, r, c in zip(prepared, reference, compressed)]
    taught = items[: taught_model.n_taught]
    assert [item["both_correct"] for item in items] == [True] * len(taught) + [False] * (len(items) - len(taught))

    # The reference begins every taught answer with the gold, so the token ranked is its own first:
    # rank 1 is then a consistency check of the scoring pass against greedy decoding, not a check
    # of a demoted gold's rank (tests/test_answer_start.py compares those with a plain forward).
    for item in taught:
        ref = item["reference"]
        assert ref["ff"]["begins_with_gold"] and ref["gold_token"]["source"] == "produced" and ref["gold_rank"] == 1
    # FF is correct by containment: the first taught answer says more than the gold.
    first = taught[0]["reference"]["ff"]
    assert first["output"] == f"{taught[0]['gold']} indeed" and first["correct"] and not first["em"]
    assert any(p.gold_index != 0 for p in prepared[: len(taught)])  # the gold is not merely option 0

    # Fates come from the compressed model's FF and MC; 90% pruning breaks generation first, and
    # recognition survives on some items: the paper's mc_only.
    for item in taught:
        comp = item["compressed"]
        assert item["fate"] == Fate.of(comp["ff"]["correct"], comp["mc"]["correct"]).value
    assert "mc_only" in {item["fate"] for item in taught} and "kept" not in {item["fate"] for item in taught}
    assert all(item["fate"] is None for item in items[len(taught):])
    # MC and the gold rank are different probes, and these models show both disagreements.
    outcomes = reference + compressed
    assert any(o["mc"]["correct"] and o["gold_rank"] > 1 for o in outcomes)
    assert any(not o["mc"]["correct"] and o["gold_rank"] == 1 for o in outcomes)

    results = build_results(run_config("taught", "magnitude:0.9", ["en"]), items,
                            n_resamples=50)
    assert recompute_check(results) == []
    assert results["summary"]["overall"]["n_both_correct"] == len(taught)


def test_what_the_batch_size_changes_and_what_it_does_not(taught_model):
    """A batch pads and orders rows differently, so a log-likelihood moves by float round-off
    (up to 2.7e-5 on smollm2-135m between batch sizes 1 and 16): scores and margins agree within
    1e-4, and everything decided from them is equal. A sampled token can still flip where the
    round-off crosses a nucleus boundary, so sampled texts are not compared, and the batch size
    is part of the outcome cache's key."""
    model, tokenizer, prepared = taught_model.model, taught_model.tokenizer, taught_model.prepared
    runs = {}
    for batch in (1, 16):
        settings = dataclasses.replace(TAUGHT, decode=dataclasses.replace(TAUGHT.decode, batch_size=batch))
        runs[batch] = probe_model(HFBackend(model, tokenizer), prepared, settings)
    assert sum(o["ff"]["correct"] for o in runs[1]) == taught_model.n_taught  # correct answers are compared too
    for one, sixteen in zip(runs[1], runs[16], strict=True):
        for probe in ("ff", "cs", "one_shot", "zero_shot_short", "gold_rank", "beam"):
            assert one[probe] == sixteen[probe], probe
        assert one["gold_token"] == approx_gold_token(sixteen["gold_token"], 1e-4)
        assert (one["mc"]["choice"], one["mc"]["correct"]) == (sixteen["mc"]["choice"], sixteen["mc"]["correct"])
        assert one["mc"]["scores"] == pytest.approx(sixteen["mc"]["scores"], abs=1e-4)
        assert one["gold_margin"] == pytest.approx(sixteen["gold_margin"], abs=1e-4)
        assert len(one["sample"]["outputs"]) == len(sixteen["sample"]["outputs"]) == 2


@pytest.mark.slow
def test_gemma_against_its_magnitude_pruned_copy_gives_valid_recomputable_results(embedded_model):
    from illusion_checks.compress import compress_model, parse_spec

    loaded = embedded_model("gemma3-270m")
    pruned = copy.deepcopy(loaded.model)
    compress_model(pruned, parse_spec("magnitude:0.5"))
    settings = ProbeSettings(items_per_language=4)
    prepared = prepare_items(load_dataset("fixtures"), ["en", "ru"], settings)
    reference = probe_model(HFBackend(loaded.model, loaded.tokenizer), prepared, settings)
    compressed = probe_model(HFBackend(pruned, loaded.tokenizer), prepared, settings)
    items = [item_record(p, r, c) for p, r, c in zip(prepared, reference, compressed)]
    results = build_results(run_config("gemma3-270m", "magnitude:0.5", ["en", "ru"]), items)
    assert validate(results) == []
    assert recompute_check(json.loads(json.dumps(results))) == []
    assert_outcomes_consistent(prepared, reference)
    assert_outcomes_consistent(prepared, compressed)
    for item in items:
        ref, comp = item["reference"], item["compressed"]
        assert item["both_correct"] == (ref["ff"]["correct"] and ref["mc"]["correct"])
        fate = Fate.of(comp["ff"]["correct"], comp["mc"]["correct"]).value if item["both_correct"] else None
        assert item["fate"] == fate, item["id"]
    assert any(item["both_correct"] for item in items), "gemma3-270m should produce and recognize some fixture items"
    assert reference != compressed


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n", encoding="utf-8")
    return path


def test_the_exemplar_is_never_an_evaluated_item():
    """Appendix C: the exemplar is disjoint from the evaluated subset. With every fixture item of
    a language evaluated, the data set has none left, nor has the embedded set: no 1-shot probe."""
    notes = []
    settings = ProbeSettings(items_per_language=200)
    prepared = prepare_items(load_dataset("fixtures"), ["de"], settings, lambda *note: notes.append(note))
    assert len(prepared) == 66 and all(p.exemplar is None for p in prepared)
    assert [(kind, lang) for kind, lang, _ in notes] == [("one_shot", "de")]
    assert "1-shot probe is skipped" in notes[0][2]


def test_an_exhausted_data_set_borrows_its_exemplar_from_the_embedded_fixtures(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "de.jsonl").read_text(encoding="utf-8").splitlines()[:5]]
    for row in rows:
        row["id"] = "mine-" + row["id"]
    dataset = load_dataset(str(_write_jsonl(tmp_path / "de.jsonl", rows)))
    notes = []
    prepared = prepare_items(dataset, ["de"], ProbeSettings(items_per_language=200), lambda *n: notes.append(n))
    evaluated = {p.item.id for p in prepared} | {p.item.context for p in prepared}
    for p in prepared:
        assert p.exemplar_source == "fixtures" and p.exemplar is not None
        # Not the same item under another id either: the fixtures' de-001..de-005 carry these passages.
        assert p.exemplar.id not in evaluated and p.exemplar.context not in evaluated
    assert p.exemplar.id == "de-006" and notes and notes[0][0] == "one_shot"


def test_one_shot_outcomes_record_their_exemplar_and_are_null_without_one(tiny_models, tmp_path):
    model, tokenizer = tiny_models["llama"]
    small = ProbeSettings(decode=DecodeSettings(max_new_tokens=4, batch_size=4), items_per_language=2,
                          reachability=False)
    prepared = prepare_items(load_dataset("fixtures"), ["en"], small)
    missing = [dataclasses.replace(p, exemplar=None, exemplar_source=None) for p in prepared]
    outcomes = probe_model(HFBackend(model, tokenizer), prepared + missing, small)
    for p, o in zip(prepared, outcomes):
        assert o["one_shot"]["exemplar_id"] == p.exemplar.id != p.item.id
        assert o["one_shot"]["exemplar_source"] == "dataset"
    assert [o["one_shot"] for o in outcomes[len(prepared):]] == [None] * len(missing)


def test_the_answer_scope_is_part_of_the_results_config_and_the_cache_key():
    from illusion_checks.cache import cache_key

    line = ProbeSettings()
    full = dataclasses.replace(line, decode=dataclasses.replace(line.decode, stop_at_newline=False))
    assert (line.to_dict()["answer_scope"], full.to_dict()["answer_scope"]) == ("line", "full")
    assert cache_key({"probes": line.to_dict()}) != cache_key({"probes": full.to_dict()})
    # --illusion-answer-scope reaches the probes
    from illusion_checks.evaluation import probe_settings
    from illusion_checks.spec import EvaluationSpec

    assert probe_settings(EvaluationSpec(answer_scope="full")).to_dict() == full.to_dict()
    assert probe_settings(EvaluationSpec()).to_dict() == line.to_dict()


@pytest.mark.slow
def test_full_answer_scope_scores_the_whole_generation_and_line_scope_its_first_line(embedded_model):
    """Appendix B literally (`full`): containment anywhere in the 32 new tokens; the default
    (`line`) reads the first non-empty line, which greedy decoding makes a prefix of `full`'s."""
    loaded = embedded_model("smollm2-135m")
    line = ProbeSettings(items_per_language=6, reachability=False)
    full = dataclasses.replace(line, decode=dataclasses.replace(line.decode, stop_at_newline=False))
    prepared = prepare_items(load_dataset("fixtures"), ["en"], line)
    by_scope = {s.answer_scope: probe_model(HFBackend(loaded.model, loaded.tokenizer), prepared, s) for s in (line, full)}
    multi = []
    for short, whole in zip(by_scope["line"], by_scope["full"]):
        lines = [ln.strip() for ln in whole["ff"]["output"].split("\n") if ln.strip()]
        if len(lines) > 1:
            assert short["ff"]["output"] == lines[0]
            multi.append((short, lines))
    assert multi, "smollm2-135m should write more than one line in 32 tokens on some fixture item"


def test_a_gold_only_line_2_holds_is_correct_under_full_scope_and_wrong_under_line_scope():
    """A tiny model taught to answer one item "Well,", then the gold on the next line: `full` scope
    (Appendix B: containment anywhere in the new tokens) scores it correct, `line` scope (the first
    non-empty line) wrong; both through --illusion-answer-scope's own path to the probes."""
    from illusion_checks.probing import probe_settings
    from illusion_checks.spec import EvaluationSpec
    from tests.helpers.tiny import trained_tiny_model

    prepared = prepare_items(load_dataset("fixtures"), ["en"], ProbeSettings(items_per_language=1))
    gold = prepared[0].item.gold
    model, tokenizer = trained_tiny_model([prepared[0].item], [f"Well,\n{gold}"], steps=80)
    by_scope = {}
    for scope in ("line", "full"):
        settings = probe_settings(EvaluationSpec(answer_scope=scope, no_reachability=True))  # 32 new tokens
        (by_scope[scope],) = probe_model(HFBackend(model, tokenizer), prepared, settings)
    assert by_scope["line"]["ff"]["output"] == "Well,", by_scope
    assert gold in by_scope["full"]["ff"]["output"].split("\n")[1], by_scope
    assert by_scope["full"]["ff"]["correct"] is True and by_scope["line"]["ff"]["correct"] is False


def test_truncation_is_recorded_cs_reads_ffs_passage_and_a_cut_gold_is_never_both_correct(taught_model):
    """Appendix B(6)'s caps, made visible: with a 72-token cap, a fixture passage whose gold sits at its
    end is cut, the gold span with it. The outcome says so per prompt kind; the CS prompt holds exactly
    FF's (cut) passage, its options added; the item cannot be both-correct (an answer the passage no
    longer holds says nothing about compression), and the summary counts it."""
    from illusion_checks.probing import item_prompts
    from illusion_checks.prompts import PromptSettings
    from illusion_checks.metrics import summarize

    model, tokenizer = taught_model.model, taught_model.tokenizer
    settings = dataclasses.replace(SMALL, prompts=PromptSettings(max_prompt_tokens=72, one_shot_max_prompt_tokens=2000))
    prepared = prepare_items(load_dataset("fixtures"), ["en"], dataclasses.replace(settings, items_per_language=66))
    late = next(p for p in prepared if p.item.context.rindex(p.item.gold) > 0.8 * len(p.item.context)
                and len(tokenizer(p.item.context)["input_ids"]) > 120)
    q = item_prompts(tokenizer, late, settings)
    assert q.truncation["ff"] == {"cut": True, "gold_kept": False}
    assert q.truncation["zero_shot_short"] == {"cut": False, "gold_kept": True}  # its own, larger cap
    ff_text, cs_text = tokenizer.decode(q.ff.prompt_ids), tokenizer.decode(q.cs)
    passage = ff_text.split("Context: ", 1)[1].split("\n\nQuestion:", 1)[0]
    assert late.item.gold not in passage and late.item.context.startswith(passage)
    assert q.truncation["cs"]["same_as_ff"] is (f"Context: {passage}\n\nQuestion:" in cs_text)
    outcome = probe_model(HFBackend(model, tokenizer), [late], settings)[0]
    both_right = copy.deepcopy(outcome)
    both_right["ff"]["correct"] = both_right["mc"]["correct"] = True
    record = item_record(late, both_right, both_right)
    assert record["reference"]["truncation"]["ff"]["gold_kept"] is False
    assert record["both_correct"] is False and record["fate"] is None
    summary = summarize([record], n_resamples=0)["per_language"]["en"]
    assert summary["n_both_correct"] == 0
    assert summary["truncation"]["reference"]["ff"] == 1.0 and summary["truncation"]["reference"]["gold_cut"] == 1
    uncut = dict(both_right, truncation={**both_right["truncation"], "ff": {"cut": True, "gold_kept": True}})
    assert item_record(late, uncut, uncut)["both_correct"] is True  # a cut that keeps the gold counts
