"""Calibration sources, the no-overlap check, token windows and the fingerprint."""

from __future__ import annotations

import json

import pytest
import torch

from illusion_checks.compress import calibration_batch, calibration_texts, fingerprint


class CharTokenizer:
    """One token per character: enough to check windowing without a real vocabulary."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        assert add_special_tokens is False
        return {"input_ids": [ord(c) % 1000 for c in text]}


POOL = {
    "en": [f"english passage {i} about rivers and towns." for i in range(10)],
    "sw": [f"kifungu cha kiswahili {i} kuhusu mito." for i in range(6)],
    "de": [f"deutscher Abschnitt {i} über Flüsse." for i in range(4)],
}
EVAL = {"The evaluated context about mountains.", "Ein bewerteter Kontext."}


def test_english_is_the_shared_english_pool_shuffled_and_seeded():
    texts = calibration_texts("english", POOL, EVAL, ["en", "sw"], seed=0)
    assert list(texts) == ["*"] and sorted(texts["*"]) == sorted(POOL["en"])
    assert texts == calibration_texts("english", POOL, EVAL, ["en", "sw"], seed=0)
    assert texts != calibration_texts("english", POOL, EVAL, ["en", "sw"], seed=1)


def test_balanced_takes_an_equal_share_of_each_evaluated_language():
    texts = calibration_texts("balanced", POOL, EVAL, ["en", "sw", "de"], seed=0)["*"]
    counts = {lang: sum(p in POOL[lang] for p in texts) for lang in POOL}
    assert counts == {"en": 4, "sw": 4, "de": 4}


def test_per_language_has_one_set_per_language():
    texts = calibration_texts("per-language", POOL, EVAL, ["sw", "de"], seed=0)
    assert set(texts) == {"sw", "de"} and sorted(texts["sw"]) == sorted(POOL["sw"])


def test_a_language_without_passages_is_an_error():
    with pytest.raises(ValueError, match="needs passages in 'yo'"):
        calibration_texts("balanced", POOL, EVAL, ["en", "yo"], seed=0)


def test_text_and_jsonl_files(tmp_path):
    txt = tmp_path / "calib.txt"
    txt.write_text("first passage\nstill first\n\nsecond passage\n\n\n", encoding="utf-8")
    assert sorted(calibration_texts(str(txt), {}, EVAL, [], seed=0)["*"]) == ["first passage\nstill first", "second passage"]
    jsonl = tmp_path / "calib.jsonl"
    jsonl.write_text(json.dumps({"text": "a"}) + "\n" + json.dumps("b") + "\n\n", encoding="utf-8")
    assert sorted(calibration_texts(str(jsonl), {}, EVAL, [], seed=0)["*"]) == ["a", "b"]


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(ValueError, match="one of english, balanced, per-language or a text/JSONL file, but is 'c4'"):
        calibration_texts("c4", POOL, EVAL, ["en"], seed=0)


@pytest.mark.parametrize("passage", ["The evaluated context about mountains.", "Intro. The evaluated context about mountains. More."])
def test_a_passage_equal_to_or_containing_an_evaluated_context_is_refused(tmp_path, passage):
    pool = {"en": POOL["en"] + [passage]}
    with pytest.raises(ValueError, match="overlaps an evaluated item"):
        calibration_texts("english", pool, EVAL, ["en"], seed=0)
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": passage}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="overlaps an evaluated item"):
        calibration_texts(str(path), {}, EVAL, ["en"], seed=0)


def test_windows_are_seeded_full_length_slices_of_the_text():
    texts = POOL["en"] * 5
    batch = calibration_batch(CharTokenizer(), texts, nsamples=6, seqlen=40, seed=0)
    assert batch.shape == (6, 40) and batch.dtype == torch.long
    assert torch.equal(batch, calibration_batch(CharTokenizer(), texts, 6, 40, seed=0))
    assert not torch.equal(batch, calibration_batch(CharTokenizer(), texts, 6, 40, seed=1))
    # With one text the shuffle is moot: every window is a contiguous slice of it.
    text = " ".join(POOL["en"])
    for row in calibration_batch(CharTokenizer(), [text], nsamples=5, seqlen=30, seed=2):
        assert "".join(chr(c) for c in row.tolist()) in text


def test_too_few_tokens_gives_as_many_full_windows_as_fit_and_warns():
    texts = ["x" * 95]
    with pytest.warns(UserWarning, match="fewer than nsamples x seqlen = 8 x 30; using 3 disjoint windows"):
        batch = calibration_batch(CharTokenizer(), texts, nsamples=8, seqlen=30, seed=0)
    assert batch.shape == (3, 30)
    with pytest.raises(ValueError, match="fewer than one window of seqlen=200"):
        calibration_batch(CharTokenizer(), texts, nsamples=8, seqlen=200, seed=0)


def test_fingerprint_covers_source_and_token_ids():
    batch = torch.arange(12).reshape(3, 4)
    assert fingerprint("english", batch) == fingerprint("english", batch.clone())
    assert fingerprint("english", batch) != fingerprint("balanced", batch)
    assert fingerprint("english", batch) != fingerprint("english", batch.reshape(4, 3))
    changed = batch.clone()
    changed[2, 3] = 99
    assert fingerprint("english", batch) != fingerprint("english", changed)
    assert len(fingerprint("english", batch)) == 64
