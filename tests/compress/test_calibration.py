"""Calibration sources, the no-overlap check, token windows and the fingerprint."""

from __future__ import annotations

import json
import time

import pytest
import torch

from illusion_checks.compress import calibration_batch, calibration_texts, fingerprint
from illusion_checks.datasets import load_dataset


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
    with pytest.raises(ValueError, match="one of english, balanced, per-language, embedded, c4 or a text/JSONL file, "
                                         "but is 'c5'"):
        calibration_texts("c5", POOL, EVAL, ["en"], seed=0)


def test_embedded_is_every_fixture_language_minus_the_evaluated_passages():
    fixtures = load_dataset("fixtures").by_lang
    equal = fixtures["de"][0].context
    inside = fixtures["en"][1].context[:60]  # an evaluated context that a fixture passage contains
    texts = calibration_texts("embedded", {}, {equal, inside}, ["de"], seed=0)
    assert list(texts) == ["*"]
    everything = [item.context for items in fixtures.values() for item in items]
    assert sorted(texts["*"]) == sorted(p for p in everything if p != equal and inside not in p)
    assert len(texts["*"]) == len(everything) - 2
    assert texts == calibration_texts("embedded", {}, {equal, inside}, ["de"], seed=0)


def test_english_without_english_in_the_data_falls_back_to_the_embedded_corpus_and_says_so():
    notices: list[tuple[str | None, str]] = []
    pool = {lang: POOL[lang] for lang in ("sw", "de")}
    evaluated = {load_dataset("fixtures").by_lang["en"][0].context}
    texts = calibration_texts("english", pool, evaluated, ["sw", "de"], seed=0,
                              notice=lambda lang, message: notices.append((lang, message)))
    english = [item.context for item in load_dataset("fixtures").by_lang["en"]][1:]
    assert sorted(texts["*"]) == sorted(english)
    assert notices == [("en", "calibration 'english': the data set has no unevaluated passages in 'en'; "
                              f"using the embedded fixture corpus's {len(english)} 'en' passages")]
    quiet: list = []
    calibration_texts("english", POOL, EVAL, ["sw"], seed=0, notice=lambda lang, message: quiet.append(message))
    assert quiet == []  # the data set's own English passages need no notice


def test_balanced_falls_back_per_language():
    notices: list[tuple[str | None, str]] = []
    texts = calibration_texts("balanced", POOL, EVAL, ["de", "zh"], seed=0,
                              notice=lambda lang, message: notices.append((lang, message)))["*"]
    chinese = {item.context for item in load_dataset("fixtures").by_lang["zh"]}
    assert sum(p in POOL["de"] for p in texts) == 4 and sum(p in chinese for p in texts) == 4 and len(texts) == 8
    assert [lang for lang, _ in notices] == ["zh"] and "embedded fixture corpus" in notices[0][1]


@pytest.mark.parametrize("source", ["english", "balanced", "per-language"])
def test_a_language_missing_everywhere_names_the_source_and_language_and_the_alternatives(source):
    # Every English fixture passage evaluated, and no English in the data set: nowhere to fall back to.
    evaluated = {item.context for item in load_dataset("fixtures").by_lang["en"]} | EVAL
    pool = {"th": [], "sw": POOL["sw"]}
    langs = ["th"] if source != "english" else ["sw"]
    missing = "th" if source != "english" else "en"
    with pytest.raises(ValueError, match=f"calibration source '{source}' needs passages in '{missing}'") as caught:
        calibration_texts(source, pool, evaluated, langs, seed=0)
    message = str(caught.value)
    assert "\n" not in message
    for alternative in ("--illusion-calibration=embedded", "c4", ".txt/.jsonl file"):
        assert alternative in message


def test_per_language_does_not_fall_back():
    with pytest.raises(ValueError, match="needs passages in 'zh'"):
        calibration_texts("per-language", POOL, EVAL, ["de", "zh"], seed=0, notice=lambda lang, message: None)


def test_c4_offline_fails_fast_in_one_line(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    start = time.perf_counter()
    with pytest.raises(ValueError, match="calibration source 'c4' .*needs the network") as caught:
        calibration_texts("c4", POOL, EVAL, ["en"], seed=0, nsamples=4)
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert "\n" not in message and "--illusion-calibration=embedded" in message and ".txt/.jsonl file" in message


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
