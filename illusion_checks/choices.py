"""Multiple-choice options: the gold plus 3 distractors from other gold answers of the language.

No option but the gold ever holds the gold: a candidate that contains the gold or an alias, or is
contained in one, compared as scoring compares (`is_correct`: compact normal forms), is left out,
or copying it would score as a correct answer (CS, `distractors_only`) and MC would hold two right
options."""

from __future__ import annotations

import random

from collections.abc import Sequence

from illusion_checks.datasets import QAItem
from illusion_checks.scoring import normalize, normalize_compact, trigram_similarity

N_DISTRACTORS = 3
DISTRACTORS = ("standard", "hard")  # `standard`: random; `hard`: most similar
# The CS ablations: the MC distractors without the gold; four answers from another language.
ABLATIONS = ("distractors_only", "unrelated")


def overlaps(candidate: str, golds: Sequence[str]) -> bool:
    """Whether a candidate contains a gold (or alias) or is contained in one, as scoring compares;
    a candidate with no content to compare counts as overlapping (it cannot be an option)."""
    text = normalize_compact(candidate)
    return not text or any(gold and (gold in text or text in gold) for gold in map(normalize_compact, golds))


def distractor_pool(item: QAItem, language_items: list[QAItem]) -> list[str]:
    """Other gold answers of the language, one per normalized form, none overlapping the gold."""
    pool: dict[str, str] = {}
    for other in language_items:
        key = normalize(other.gold)
        if key not in pool and not overlaps(other.gold, item.golds):
            pool[key] = other.gold
    return [pool[key] for key in sorted(pool)]


def build_options(item: QAItem, language_items: list[QAItem], mode: str, seed: int) -> tuple[list[str], int]:
    """(options, gold_index): `standard` draws distractors at random, `hard` takes the 3 most
    similar by character-trigram overlap; option order is seeded per item."""
    if mode not in DISTRACTORS:
        raise ValueError(f"distractor mode '{mode}' is not one of {', '.join(DISTRACTORS)}")
    pool = distractor_pool(item, language_items)
    if len(pool) < N_DISTRACTORS:
        raise ValueError(
            f"language '{item.lang}' has only {len(pool)} distinct answers besides item {item.id!r}'s gold; "
            f"MC needs {N_DISTRACTORS} distractors"
        )
    rng = random.Random(f"{seed}:{item.lang}:{item.id}")
    if mode == "standard":
        distractors = rng.sample(pool, N_DISTRACTORS)
    else:
        # Ties broken by the normalized text so the choice never depends on pool order.
        ranked = sorted(pool, key=lambda a: (-trigram_similarity(item.gold, a), normalize(a)))
        distractors = ranked[:N_DISTRACTORS]
    options = [item.gold, *distractors]
    rng.shuffle(options)
    return options, options.index(item.gold)


def unrelated_candidates(item: QAItem, other_language_items: list[QAItem], seed: int) -> list[str]:
    """Four answers from items of other languages, none overlapping the gold: the `unrelated` CS
    ablation (fewer where fewer exist; none: the ablation cannot run for this item)."""
    rng = random.Random(f"{seed}:unrelated:{item.lang}:{item.id}")
    answers = sorted({other.gold for other in other_language_items if not overlaps(other.gold, item.golds)})
    return rng.sample(answers, min(4, len(answers)))
