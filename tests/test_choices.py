"""MC options: gold never a distractor, hard mode picks the most similar, seeded order."""

from __future__ import annotations

import pytest

from illusion_checks.datasets import QAItem
from illusion_checks.choices import build_options, distractor_pool
from illusion_checks.scoring import normalize


def _items(answers):
    return [QAItem(f"i{n}", "en", f"ctx {a}", "q?", a) for n, a in enumerate(answers)]


def test_gold_never_a_distractor_even_when_spelled_differently():
    items = _items(["New York", "new york!", "Paris", "Rome", "Berlin", "Madrid"])
    options, gold_index = build_options(items[0], items, "standard", 42)
    assert options[gold_index] == "New York"
    assert sum(normalize(o) == normalize("New York") for o in options) == 1
    assert "new york!" not in distractor_pool(items[0], items)


def test_hard_mode_takes_the_three_most_similar_by_trigrams():
    """Written by hand. Trigrams of "1427": {142, 427}. Similarities (Jaccard): "14270" 2/3, but it
    contains the gold, so it is never an option; "0427", "1428", "2427", "3427" 1/3 each; "1472",
    "Lisbon", "zebra" 0. Four answers tie at 1/3 for three places: the normalized text breaks the
    tie ("0427" < "1428" < "2427" < "3427"), whatever the order of the items, so "3427" is left out
    although it comes first."""
    answers = ["1427", "3427", "zebra", "1472", "1428", "Lisbon", "14270", "0427", "2427"]
    for order in (answers[1:], answers[:0:-1], answers[4:] + answers[1:4]):
        items = _items(["1427", *order])
        options, gold_index = build_options(items[0], items, "hard", 42)
        assert options[gold_index] == "1427"
        assert sorted(o for k, o in enumerate(options) if k != gold_index) == ["0427", "1428", "2427"], order


def test_option_order_is_seeded_per_item_and_reproducible():
    items = _items(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"])
    first = build_options(items[0], items, "standard", 42)
    assert first == build_options(items[0], list(items), "standard", 42)
    positions = {build_options(item, items, "standard", 42)[1] for item in items}
    assert len(positions) > 1  # the gold is not always in the same slot


def test_too_few_distinct_answers_is_an_error():
    items = _items(["a1", "b2", "c3"])
    with pytest.raises(ValueError, match="only 2 distinct answers"):
        build_options(items[0], items, "standard", 42)


def _overlap(a: str, b: str) -> bool:
    """Containment either way on compact normal forms: the scorer's comparison (`is_correct`)."""
    from illusion_checks.scoring import is_correct

    return is_correct(a, [b]) or is_correct(b, [a])


@pytest.mark.parametrize("mode", ["standard", "hard"])
def test_no_fixture_item_has_an_option_that_holds_its_gold(mode):
    """Every item of the embedded fixture set, each language alone (the `unrelated` answers then come
    from the other languages) and all together: no distractor and no `unrelated` answer contains the
    gold or an alias, or is contained in one (before: 4 of 924 option sets, and 28 of 462 items'
    `unrelated` answers, drawn from the same language)."""
    from illusion_checks.datasets import load_dataset
    from illusion_checks.probing import ProbeSettings, prepare_items

    dataset = load_dataset("fixtures")
    settings = ProbeSettings(items_per_language=1000, distractors=mode, ablations=("distractors_only", "unrelated"))
    notes = []
    runs = [prepare_items(dataset, [lang], settings, lambda *note: notes.append(note)) for lang in dataset.by_lang]
    runs.append(prepare_items(dataset, None, settings))
    for prepared in runs:
        assert sum(len(p.ablation_candidates["unrelated"]) == 4 for p in prepared) == len(prepared)
        for p in prepared:
            distractors = [o for k, o in enumerate(p.options) if k != p.gold_index]
            assert len(distractors) == 3 and distractors == p.ablation_candidates["distractors_only"]
            bad = [(o, g) for o in distractors + p.ablation_candidates["unrelated"] for g in p.item.golds if _overlap(o, g)]
            assert not bad, (p.item.lang, p.item.id, bad)
        langs = {p.item.lang for p in prepared}
        if len(langs) == 1:  # the unrelated answers are another language's golds
            foreign = {i.gold for lang, rows in dataset.by_lang.items() if lang not in langs for i in rows}
            assert all(set(p.ablation_candidates["unrelated"]) <= foreign for p in prepared)
    assert sorted(lang for kind, lang, _ in notes if kind == "unrelated") == sorted(dataset.by_lang)


def test_candidates_that_contain_or_are_contained_in_the_gold_or_an_alias_are_never_options():
    from illusion_checks.choices import unrelated_candidates

    gold = QAItem("g", "en", "ctx", "q?", "New York", aliases=("NYC",))
    others = _items(["New York City", "York", "nyc.", "the NYC area", "Paris", "Rome", "Berlin", "Madrid", "Oslo"])
    assert distractor_pool(gold, others) == ["Berlin", "Madrid", "Oslo", "Paris", "Rome"]
    for mode in ("standard", "hard"):
        for seed in range(20):
            options, k = build_options(gold, others, mode, seed)
            assert options[k] == "New York" and not {"New York City", "York", "nyc.", "the NYC area"} & set(options)
    assert set(unrelated_candidates(gold, others, 3)) <= {"Paris", "Rome", "Berlin", "Madrid", "Oslo"}
    assert unrelated_candidates(gold, _items(["New York City", "York"]), 3) == []
