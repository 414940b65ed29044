"""Answer scoring: normalisation, substring correctness, token F1 / exact match, trigram overlap.

The paper (Appendix B) scores open generation by "normalized substring containment after
lowercasing and punctuation removal", for every script. Normalisation here:

1. drop reasoning spans: ``<think>...</think>``, an unterminated ``<think>`` to the end, and
   everything up to a stray ``</think>`` (chat templates that open the span in the prompt);
2. Unicode NFKC (full-width forms, ligatures, compatibility digits fold to plain ones);
3. casefold (a stronger lowercase: German ß -> ss, Greek final sigma);
4. delete punctuation and symbols of every script (Unicode categories P* and S*: Arabic ، ؟ «»,
   CJK 。，、「」, Devanagari । ॥ ...) plus invisible format/control characters (Cf, Cc);
   deleted, not replaced by a space, as in SQuAD, so "1,427" and "1427" agree;
5. decimal digits of every script fold to ASCII (Arabic-Indic "١٤٢٧" -> "1427");
6. collapse whitespace runs to one space and strip.

`normalize_compact` also removes the spaces. `is_correct` compares compact forms, so digit
grouping ("1 427" vs "1427") and spacing in scripts written without spaces do not decide
correctness. Token F1 splits the spaced form on whitespace and, for scripts written without
spaces (Han, kana, Thai, Lao, Khmer, Myanmar, Tibetan), further into single characters
(combining marks stay with their base), as MLQA does for Chinese.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

_THINK_SPAN = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>.*", re.DOTALL | re.IGNORECASE)
_MARKUP_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_THINK_CLOSE = re.compile(r"^.*</think>", re.DOTALL | re.IGNORECASE)

# Scripts written without spaces between words: tokenised per character for F1.
_CHARACTER_SCRIPTS = (
    (0x0E00, 0x0EFF),    # Thai, Lao
    (0x0F00, 0x0FFF),    # Tibetan
    (0x1000, 0x109F),    # Myanmar
    (0x1780, 0x17FF),    # Khmer
    (0x2E80, 0x2FDF),    # CJK radicals
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x3100, 0x31FF),    # Bopomofo, Katakana extensions
    (0x3400, 0x4DBF),    # CJK extension A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0x20000, 0x3FFFF),  # CJK extensions B onwards
)


def strip_think(text: str) -> str:
    """Remove <think> reasoning spans, closed or not, before any matching."""
    text = _THINK_SPAN.sub(" ", text)
    text = _THINK_CLOSE.sub(" ", text)
    return _THINK_OPEN.sub(" ", text)


def _dropped(char: str) -> bool:
    """Whether a non-space character is punctuation, a symbol, or invisible formatting."""
    category = unicodedata.category(char)
    return category[0] in "PS" or category in ("Cf", "Cc")


def _fold(char: str) -> str:
    """One character's contribution: a space, nothing, an ASCII digit, or itself."""
    if char.isspace():
        return " "
    if _dropped(char):
        return ""
    # Decimal digits of every script (Arabic-Indic ١٤٢٧, Bengali ১৪২৭) compare as 0-9.
    digit = unicodedata.decimal(char, None)
    return str(digit) if digit is not None else char


def strip_markup(text: str) -> str:
    """Replace HTML-like tags (`<strong>`, `</b>`) by spaces: base models often wrap answers in
    them, and deleting only their brackets would glue the tag name onto the answer's words."""
    return _MARKUP_TAG.sub(" ", text)


def normalize(text: str) -> str:
    """Think spans and markup tags removed, NFKC, casefolded, punctuation/symbols removed, spaced."""
    text = unicodedata.normalize("NFKC", strip_markup(strip_think(text))).casefold()
    return " ".join("".join(_fold(ch) for ch in text).split())


def normalize_compact(text: str) -> str:
    """normalize() with every space removed: the form substring containment compares."""
    return normalize(text).replace(" ", "")


def _as_list(golds: str | Iterable[str]) -> list[str]:
    """A single gold string as a one-element list (never iterate a string's characters)."""
    return [golds] if isinstance(golds, str) else list(golds)


def is_correct(output: str, golds: str | Sequence[str]) -> bool:
    """True if any gold (or alias) is contained in the output, comparing compact normal forms."""
    produced = normalize_compact(output)
    if not produced:
        return False
    for gold in _as_list(golds):
        wanted = normalize_compact(gold)
        if wanted and wanted in produced:
            return True
    return False


THINK_START, THINK_END = "<think>", "</think>"  # a reasoning model's think span (Qwen3, DeepSeek-R1)


def after_thinking(text: str) -> str | None:
    """The text after a reasoning model's think span (Qwen3's `<think>…</think>`, stripped before
    matching as in paper Appendix B(7)); None while the span is still open (no answer yet)."""
    if THINK_END in text:
        return text.rsplit(THINK_END, 1)[1]
    return None if text.lstrip().startswith(THINK_START) else text


def carries_content(text: str) -> bool:
    """Whether text holds a letter, digit or mark: not only whitespace, punctuation, symbols and
    invisible formatting (a markdown bullet, an opening quote). A replacement character (half of a
    multi-byte character cut by byte-level tokens) counts as content."""
    return any(not ch.isspace() and (ch == "\ufffd" or not _dropped(ch)) for ch in text)


def begins_with(output: str, golds: str | Sequence[str]) -> bool:
    """True if the output starts with any gold (or alias), comparing compact normal forms."""
    produced = normalize_compact(output)
    return any(wanted and produced.startswith(wanted) for wanted in map(normalize_compact, _as_list(golds)))


def _is_character_script(char: str) -> bool:
    """Whether char belongs to a script written without spaces between words."""
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _CHARACTER_SCRIPTS)


def _split_word(word: str) -> list[str]:
    """Split one whitespace word so each no-space-script character is its own token."""
    parts: list[str] = []
    current, current_is_char = "", False
    for ch in word:
        if current and unicodedata.category(ch).startswith("M"):
            current += ch  # a combining mark (Thai vowel, tone mark) stays with its base
        elif current_is_char or _is_character_script(ch):
            if current:
                parts.append(current)
            current, current_is_char = ch, _is_character_script(ch)
        else:
            current += ch
    if current:
        parts.append(current)
    return parts


def tokens(text: str) -> list[str]:
    """Normalised tokens: whitespace words, with spaceless scripts split per character."""
    return [tok for word in normalize(text).split() for tok in _split_word(word)]


def _f1(pred: list[str], gold: list[str]) -> float:
    """SQuAD token F1 between two token lists; 0.0 if either is empty."""
    if not pred or not gold:
        return 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(output: str, golds: str | Sequence[str]) -> float:
    """Best SQuAD-style token F1 of the output against any gold (0.0 for empty strings)."""
    pred = tokens(output)
    return max((_f1(pred, tokens(g)) for g in _as_list(golds)), default=0.0)


def exact_match(output: str, golds: str | Sequence[str]) -> bool:
    """True if the output equals any gold after compact normalisation (never for empty text)."""
    produced = normalize_compact(output)
    return bool(produced) and any(produced == normalize_compact(g) for g in _as_list(golds))


def _trigrams(text: str) -> set[str]:
    """Character 3-grams of the normalised text; a shorter non-empty text is one gram."""
    norm = normalize(text)
    if len(norm) < 3:
        return {norm} if norm else set()
    return {norm[i:i + 3] for i in range(len(norm) - 2)}


def trigram_similarity(a: str, b: str) -> float:
    """Jaccard overlap of character-trigram sets of the normalised strings (0.0 if either empty)."""
    grams_a, grams_b = _trigrams(a), _trigrams(b)
    if not grams_a or not grams_b:
        return 0.0
    return len(grams_a & grams_b) / len(grams_a | grams_b)
