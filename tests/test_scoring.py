"""Tests for illusion_checks.scoring: normalisation across scripts, correctness, F1/EM, trigrams."""

from __future__ import annotations

import pytest

from illusion_checks.scoring import (
    carries_content,
    exact_match,
    is_correct,
    normalize,
    normalize_compact,
    strip_think,
    token_f1,
    tokens,
    trigram_similarity,
)


# --- normalize ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("  Around   1427. ", "around 1427"),
    ("Hello, World!", "hello world"),
    ("القاهرة، مصر؟ «نعم»", "القاهرة مصر نعم"),          # Arabic comma, question mark, guillemets
    ("北京。上海，广州、「深圳」？！", "北京上海广州深圳"),  # CJK full stop, commas, corner quotes
    ("भारत। दिल्ली॥", "भारत दिल्ली"),                       # Devanagari danda, double danda
    ("Straße", "strasse"),                                 # casefold, not just lower
    ("ＡＢＣ　１２３", "abc 123"),                           # NFKC full-width letters and space
    ("1,427", "1427"),                                     # punctuation deleted, not spaced
    ("١٤٢٧", "1427"),                                      # Arabic-Indic digits fold to ASCII
    ("$100 + 5%", "100 5"),                                # symbols (S*) go too
    ("a\u200bb\tc\n", "ab c"),                             # zero-width space, tabs, newlines
])
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_keeps_combining_marks() -> None:
    # Devanagari vowel signs and the virama are marks (M*), not punctuation.
    assert normalize("नमस्ते") == "नमस्ते"
    assert normalize("สวัสดี") == "สวัสดี"


@pytest.mark.parametrize("raw,expected", [
    ("<think>it is Paris? no</think> Lyon", "lyon"),
    ("<THINK>x</THINK>a<think>y</think>b", "a b"),
    ("Lyon <think>unterminated reasoning about Paris", "lyon"),
    ("reasoning opened by the template</think> Lyon", "lyon"),
    ("<think>\nmulti\nline\n</think>\nLyon", "lyon"),
])
def test_think_spans_are_stripped(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_strip_think_leaves_plain_text() -> None:
    assert strip_think("no reasoning here") == "no reasoning here"


def test_normalize_compact_removes_spaces() -> None:
    assert normalize_compact(" 1 427 ") == "1427"
    assert normalize_compact("東京 都") == "東京都"


# --- is_correct --------------------------------------------------------------------------

def test_substring_containment() -> None:
    assert is_correct("It was discovered around 1427.", ["1427"])
    assert is_correct("The answer is PARIS!", ["Paris"])
    assert not is_correct("the 15th century", ["1427"])


def test_containment_across_scripts() -> None:
    assert is_correct("الجواب هو: القاهرة.", ["القاهرة"])
    assert is_correct("答案是北京。", ["北京"])
    assert is_correct("उत्तर: दिल्ली।", ["दिल्ली"])
    assert is_correct("१४२७ में", ["1427"])  # Devanagari digits


def test_compact_form_ignores_digit_grouping_and_spacing() -> None:
    assert is_correct("around 1 427", ["1427"])
    assert is_correct("東京 都です", ["東京都"])


def test_aliases_count() -> None:
    assert is_correct("It is the USA", ["United States", "USA"])
    assert not is_correct("It is Canada", ["United States", "USA"])


def test_single_gold_string_is_not_split_into_characters() -> None:
    assert not is_correct("x", "xyz")
    assert is_correct("xyz!", "xyz")


def test_empty_output_or_gold_is_never_correct() -> None:
    assert not is_correct("", ["Paris"])
    assert not is_correct("  ...  ", ["Paris"])
    assert not is_correct("<think>Paris</think>", ["Paris"])
    assert not is_correct("Paris", ["", "!!"])
    assert not is_correct("Paris", [])


# --- token F1 / exact match --------------------------------------------------------------

def test_token_f1_squad_style() -> None:
    # pred {the, cat, sat}, gold {cat, sat, down}: 2 common, P = R = 2/3.
    assert token_f1("The cat sat.", "cat sat down") == pytest.approx(2 / 3)
    assert token_f1("Paris", "Paris") == 1.0
    assert token_f1("Lyon", "Paris") == 0.0


def test_token_f1_counts_repeated_tokens_once_each() -> None:
    # pred [a, a, b], gold [a, b]: common = 2, P = 2/3, R = 1.
    assert token_f1("a a b", "a b") == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))


def test_token_f1_takes_best_gold() -> None:
    assert token_f1("New York City", ["Paris", "New York"]) == pytest.approx(0.8)


def test_token_f1_per_character_for_cjk() -> None:
    assert tokens("東京都に住む") == ["東", "京", "都", "に", "住", "む"]
    # pred 東京都 (3 chars), gold 東京 (2 chars): P = 2/3, R = 1.
    assert token_f1("東京都", "東京") == pytest.approx(0.8)
    assert tokens("2024年3月") == ["2024", "年", "3", "月"]


def test_thai_tokens_keep_marks_with_their_base() -> None:
    assert tokens("สวัสดี") == ["ส", "วั", "ส", "ดี"]


def test_token_f1_empty() -> None:
    assert token_f1("", "Paris") == 0.0
    assert token_f1("Paris", "") == 0.0
    assert token_f1("Paris", []) == 0.0


def test_exact_match() -> None:
    assert exact_match("The Cat!", "the cat")
    assert exact_match("1 427", ["1427"])
    assert exact_match("Lyon", ["Paris", "lyon."])
    assert not exact_match("the cat sat", "the cat")
    assert not exact_match("", "")
    assert not exact_match("", ["Paris"])


# --- trigram similarity ------------------------------------------------------------------

def test_trigram_similarity_jaccard() -> None:
    # paris {par, ari, ris}, parys {par, ary, rys}: 1 shared of 5.
    assert trigram_similarity("Paris", "Parys") == pytest.approx(1 / 5)
    assert trigram_similarity("Paris", "paris!") == 1.0
    assert trigram_similarity("Paris", "Tokyo") == 0.0


def test_trigram_similarity_short_strings_are_one_gram() -> None:
    assert trigram_similarity("ab", "AB") == 1.0
    assert trigram_similarity("ab", "abc") == 0.0
    assert trigram_similarity("", "") == 0.0
    assert trigram_similarity("abc", "...") == 0.0


def test_trigram_similarity_is_symmetric() -> None:
    assert trigram_similarity("Cairo", "Caracas") == trigram_similarity("Caracas", "Cairo")


def test_html_wrapped_answers_score_like_plain_ones():
    from illusion_checks.scoring import exact_match, is_correct, token_f1

    output = "* <strong>Joseph Shea</strong>"
    assert is_correct(output, ["Joseph Shea"])
    assert token_f1(output, ["Joseph Shea"]) == 1.0
    assert exact_match("<b>1427</b>", ["1427"])
    assert token_f1("a < b and c > d", ["a b and c d"]) == 1.0  # comparison signs are not tags


@pytest.mark.parametrize("text, expected", [
    ("Paris", True), (" 4", True), ("汤", True), ("\ufffd", True),  # half of a byte-split character
    (" ", False), ("\n\n", False), ("*", False), (" «", False), ("\u200b", False), ("", False),
])
def test_carries_content_is_letters_digits_and_marks(text, expected):
    assert carries_content(text) is expected
