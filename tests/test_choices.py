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
    """Written by hand. Trigrams of "1427": {142, 427}. Similarities (Jaccard): "14270" 2/3;
    "0427", "1428", "2427" 1/3 each; "1472", "Lisbon", "zebra" 0. Three answers tie at 1/3 for the last
    two places: the normalized text breaks the tie ("0427" < "1428" < "2427"), whatever the order of
    the items, so "2427" is left out although it comes first."""
    answers = ["1427", "2427", "zebra", "1472", "1428", "Lisbon", "14270", "0427"]
    for order in (answers[1:], answers[:0:-1], answers[4:] + answers[1:4]):
        items = _items(["1427", *order])
        options, gold_index = build_options(items[0], items, "hard", 42)
        assert options[gold_index] == "1427"
        assert sorted(o for k, o in enumerate(options) if k != gold_index) == ["0427", "14270", "1428"], order


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
