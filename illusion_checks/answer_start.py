"""Where an answer starts, and the path of tokens to the gold's first content token that the gold
rank reads there (paper 3.3, Appendix B).

The gold first-token rank says how close the gold is to being produced, so it is read where the
model's answer actually begins: after the model's own leading tokens that carry no content from
its greedy output (base models often answer "\\n" first, or open a markdown bullet "* " or a
quote "«"). Content is what the scorer compares: letters, digits and marks, not whitespace,
punctuation or symbols (`scoring.carries_content`).

The gold is joined to what precedes it as the tokenizer would join it: with a leading space after
the colon-terminated prompt (Appendix B's leading-space variant), without one after a newline or
a space. Its tokens come from the joint encoding of prompt + lead + gold. From the last point the
model's own lead and that encoding share, every token up to and including the gold's first
content token is ranked at its own position: the *path*. Tokenizers that write " 1936" as " ",
"1", ... put the bare space on the path (it is the paper's first token, the leading-space variant
itself); the rank is the worst along the path, the margin the smallest.

Every text is decoded in context (after the prompt's last tokens), never token by token: a
SentencePiece token decodes without its leading space on its own, and a bare "▁" to nothing.
Appendix B's boundary check is then exact: the prompt's ids, the conditioned ids and the path
decode to exactly prompt + lead + gold, with no space doubled or lost, and the joint encoding
keeps the prompt's own ids. Where that fails, `boundary_ok` is false and `boundary_reason` says
why.

A reasoning model's think span (`<think>…</think>`, with --illusion-thinking=on) is the model's
own and is given whole: the answer, and its rank, start after it.

When the greedy answer already begins with the gold (normalized, as `is_correct` compares), the
path is the token the model began it with: the gold in the model's own tokenization, whose rank
is 1 exactly when the scoring pass agrees with greedy decoding and no other token ties it (a tie
counts against the gold: `Rank`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

from illusion_checks.scoring import THINK_END, after_thinking, begins_with, carries_content

CONTEXT = 8  # prompt tokens decoded before an answer's own, so each token reads as it does in context


@dataclass(frozen=True)
class Above:
    """A censored rank, known only to exceed `bound` (a server showing its top k log-probabilities
    by text: beyond them, or where tokens of the same text hide each other)."""

    bound: int


Rank = int | Above | None  # how many tokens are at least as likely as the gold (itself included); None: unknown
PathRanks = Sequence[tuple[Rank, float | None]]  # (rank, margin) at each path position


@dataclass(frozen=True)
class RankTarget:
    """What the gold rank reads for one item and model: the ids appended to the prompt as given,
    then the path of tokens ranked each at its own position (the last is the first content token)."""

    conditioned_ids: list[int]  # the model's own leading content-free tokens (as far as the gold shares them)
    path: list[int]  # empty when no content token can be found (an all-whitespace gold)
    texts: tuple[str, ...]  # each path token's text, decoded in context
    conditioned_text: str  # the conditioned ids' text, decoded in context
    source: str  # "produced": the model's own first token of a gold it produced; "gold": the gold's
    boundary_ok: bool
    begins_with_gold: bool
    boundary_reason: str | None = None

    @property
    def token(self) -> int | None:
        """The gold's first content token (the path's last), None when there is none."""
        return self.path[-1] if self.path else None

    @property
    def text(self) -> str:
        return self.texts[-1] if self.texts else ""

    def to_dict(self, ranks: PathRanks | None = None) -> dict[str, Any] | None:
        """The outcome's `gold_token` block (null when nothing was ranked); with `ranks`, the path
        with each position's rank and margin."""
        if not self.path:
            return None
        block: dict[str, Any] = {"id": self.path[-1], "text": self.text, "offset": len(self.conditioned_ids),
                                 "conditioned_on": self.conditioned_text, "source": self.source,
                                 "boundary_ok": self.boundary_ok}
        if self.boundary_reason:
            block["boundary_reason"] = self.boundary_reason
        if ranks is not None:
            block["path"] = [{"id": token, "text": text, "rank": None if isinstance(rank, Above) else rank,
                              "margin": margin, **({"rank_above": rank.bound} if isinstance(rank, Above) else {})}
                             for token, text, (rank, margin) in zip(self.path, self.texts, ranks, strict=True)]
        return block


def worst(ranks: PathRanks) -> tuple[Rank, float | None]:
    """A path's gold rank and margin: its largest rank and smallest margin (None where any is
    unknown). A censored position makes the path's rank censored, above the largest bound it knows."""
    if not ranks:
        return None, None
    values = [r for r, _ in ranks]
    rank: Rank
    if any(r is None for r in values):
        rank = None
    elif any(isinstance(r, Above) for r in values):  # a known rank r says: above r - 1
        rank = Above(max(r.bound if isinstance(r, Above) else r - 1 for r in values if r is not None))
    else:
        rank = max(values)
    margin = None if any(m is None for _, m in ranks) else min(m for _, m in ranks)
    return rank, margin


def _blank(tokenizer: Any, ids: Sequence[int]) -> bool:
    """Whether these tokens carry no content; a special token (end of sequence) decodes to its
    name, so it is never blank."""
    return not carries_content(tokenizer.decode(list(ids)))


def leading_blank(tokenizer: Any, ids: Sequence[int]) -> int:
    """How many of `ids` form the content-free run they start with."""
    count = 0
    while count < len(ids):
        end = count + 1
        # A character cut across byte-level tokens ("«" as two tokens) decodes to U+FFFD until its
        # last byte arrives: judge it whole.
        while end < len(ids) and end - count < 4 and tokenizer.decode(list(ids[:end])).endswith("\ufffd"):
            end += 1
        if not _blank(tokenizer, ids[:end]):
            break
        count = end
    return count


def in_context(tokenizer: Any, prompt_ids: Sequence[int], ids: Sequence[int]) -> str:
    """The text `ids` add after the prompt, decoded after its last tokens: a SentencePiece token
    keeps its leading space there, which it drops when decoded alone."""
    head_ids = list(prompt_ids[-CONTEXT:])
    head = tokenizer.decode(head_ids)
    full = tokenizer.decode([*head_ids, *ids])
    return full[len(head):] if full.startswith(head) else tokenizer.decode(list(ids))


def _encode(tokenizer: Any, text: str, chat: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=not chat)["input_ids"]


def _space_before(text: str) -> bool:
    """Whether a word written after `text` takes a leading space: after the colon-terminated
    prompt (Appendix B's leading-space variant) or a bullet, not after whitespace or an opening
    quote or bracket."""
    if not text or text[-1].isspace():
        return False
    return unicodedata.category(text[-1]) not in ("Ps", "Pi") and text[-1] not in "\"'`"


def _texts(tokenizer: Any, prompt_ids: Sequence[int], given: Sequence[int], path: Sequence[int]) -> tuple[str, ...]:
    """Each path token's text after the prompt and `given`, decoded in context."""
    texts, before = [], in_context(tokenizer, prompt_ids, given)
    for k in range(1, len(path) + 1):
        now = in_context(tokenizer, prompt_ids, [*given, *path[:k]])
        texts.append(now[len(before):] if now.startswith(before) else tokenizer.decode([path[k - 1]]))
        before = now
    return tuple(texts)


def _gold_target(tokenizer: Any, prompt: str, prompt_ids: Sequence[int], lead_ids: list[int], gold: str,
                 chat: bool, begins: bool) -> RankTarget:
    """The path to the gold's first content token, from where the model's lead and the gold's
    joint encoding part (see the module's docstring)."""
    lead = in_context(tokenizer, prompt_ids, lead_ids)
    before = prompt + lead
    variant = " " + gold if _space_before(before) else gold
    expected = lead + variant
    joint = _encode(tokenizer, before + variant, chat)
    reasons, n = [], len(prompt_ids)
    if joint[:n] == list(prompt_ids):
        rest = joint[n:]
    elif _encode(tokenizer, before, chat)[:n] != list(prompt_ids):
        # The model's own lead joins the prompt's last token in a fresh encoding (":" and "\n" as
        # ":\n" in Llama 3 and Qwen), though the model wrote it apart: lead and gold on their own.
        rest = tokenizer(lead + variant, add_special_tokens=False)["input_ids"]
    else:
        rest = lead_ids + tokenizer(variant, add_special_tokens=False)["input_ids"]
        reasons.append("the gold merges with the prompt's last token; ranked from its own encoding")
    first = leading_blank(tokenizer, rest)
    given = {in_context(tokenizer, prompt_ids, lead_ids[:m]): m for m in range(len(lead_ids) + 1)}
    # The longest stretch of the model's own lead that the gold's encoding also writes: the model's
    # tokens are given up to there, the gold's are ranked from there.
    m, k = max(((given[text], k) for k in range(min(first, len(rest)) + 1)
                if (text := in_context(tokenizer, prompt_ids, rest[:k])) in given), default=(0, 0))
    conditioned, path = lead_ids[:m], (rest[k:first + 1] if first < len(rest) else [])
    conditioned_text = in_context(tokenizer, prompt_ids, conditioned)
    if not path:
        return RankTarget(conditioned, [], (), conditioned_text, "gold", not reasons, begins, "; ".join(reasons) or None)
    read = in_context(tokenizer, prompt_ids, [*conditioned, *path])
    if not expected.startswith(read.rstrip("\ufffd")):
        reasons.append(f"the ranked tokens read {read!r} after the prompt where {expected[:len(read) + 4]!r} "
                       "is written (a space doubled or lost)")
    return RankTarget(conditioned, list(path), _texts(tokenizer, prompt_ids, conditioned, path), conditioned_text,
                      "gold", not reasons, begins, "; ".join(reasons) or None)


def rank_target(tokenizer: Any, prompt: str, generated: Sequence[int], golds: Sequence[str],
                chat: bool, prompt_ids: Sequence[int] | None = None) -> RankTarget:
    """The answer start after `prompt` given the model's greedy tokens, and the path to rank;
    `prompt_ids`, the prompt's own encoding, when the caller already has it."""
    if prompt_ids is None:
        prompt_ids = _encode(tokenizer, prompt, chat)
    think = _think_span(tokenizer, generated)
    if think is None:  # a think span that never closed: the model never reached an answer
        return RankTarget(list(generated), [], (), "", "gold", False, False,
                          "the think span never closed within the budget: no answer start to rank at")
    lead = think + leading_blank(tokenizer, generated[think:])
    lead_ids = list(generated[:lead])
    content = tokenizer.decode(list(generated[lead:]), skip_special_tokens=True)
    begins = begins_with(content, golds)
    if begins and lead < len(generated):
        path = [generated[lead]]
        return RankTarget(lead_ids, path, _texts(tokenizer, prompt_ids, lead_ids, path),
                          in_context(tokenizer, prompt_ids, lead_ids), "produced", True, True)
    return _gold_target(tokenizer, prompt, prompt_ids, lead_ids, golds[0], chat, begins)


def _think_span(tokenizer: Any, generated: Sequence[int]) -> int | None:
    """How many of the generated tokens form a reasoning model's think span (`<think>…</think>`),
    which the answer and its rank follow: 0 without one, None while it is still open."""
    text = tokenizer.decode(list(generated), skip_special_tokens=True)
    if after_thinking(text) is None:
        return None
    if THINK_END not in text:
        return 0
    return next(k for k in range(1, len(generated) + 1)
                if text.count(THINK_END) == tokenizer.decode(list(generated[:k]), skip_special_tokens=True).count(THINK_END))
