"""Where an answer starts, and which token of the gold is ranked there (paper 3.3, Appendix B).

The gold first-token rank says how close the gold is to being produced, so it is read where the
model's answer actually begins: after the model's own leading tokens that carry no content from
its greedy output (base models often answer "\\n" first, or open a markdown bullet "* " or a
quote "«"), and on the gold's first *content* token, never on a whitespace-only one (Gemma and
SmolLM2 split " 41" into " ", "4", "1"). Content is what the scorer compares: letters, digits and
marks, not whitespace, punctuation or symbols (`scoring.carries_content`).

The gold is joined to what precedes it as the tokenizer would join it: with a leading space after
the colon-terminated prompt (Appendix B's leading-space variant), without one after a newline or
a space. Its tokens come from the joint encoding of the text up to the answer start plus the gold,
and Appendix B's boundary check compares that joint token with the gold encoded on its own.

When the greedy answer already begins with the gold (normalized, as `is_correct` compares), the
token ranked is the one the model began it with: the gold in the model's own tokenization, whose
rank is 1 exactly when the scoring pass agrees with greedy decoding.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

from illusion_checks.scoring import begins_with, carries_content


@dataclass(frozen=True)
class RankTarget:
    """What the gold rank reads for one item and model: the token ids to append to the prompt
    before reading the next-token distribution, and the token ranked there."""

    conditioned_ids: list[int]  # the model's leading content-free tokens, then the gold's own
    token: int | None  # None when no content token can be found (an all-whitespace gold)
    text: str
    source: str  # "produced": the model's own first token of a gold it produced; "gold": the gold's
    boundary_ok: bool
    begins_with_gold: bool

    def to_dict(self, tokenizer: Any) -> dict[str, Any] | None:
        """The outcome's `gold_token` block (null when nothing was ranked)."""
        if self.token is None:
            return None
        return {"id": self.token, "text": self.text, "offset": len(self.conditioned_ids),
                "conditioned_on": tokenizer.decode(self.conditioned_ids), "source": self.source,
                "boundary_ok": self.boundary_ok}


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


def _encode(tokenizer: Any, text: str, chat: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=not chat)["input_ids"]


def _space_before(text: str) -> bool:
    """Whether a word written after `text` takes a leading space: after the colon-terminated
    prompt (Appendix B's leading-space variant) or a bullet, not after whitespace or an opening
    quote or bracket."""
    if not text or text[-1].isspace():
        return False
    return unicodedata.category(text[-1]) not in ("Ps", "Pi") and text[-1] not in "\"'`"


def _gold_ids(tokenizer: Any, prompt: str, prompt_ids: Sequence[int], lead: str, gold: str,
              chat: bool) -> tuple[list[int], bool]:
    """The gold's token ids as they follow the prompt and the model's leading whitespace `lead`,
    and Appendix B's boundary check: in the joint encoding of prompt + lead + gold, no token
    straddles the answer start, and the first content token is the gold's first content token
    encoded on its own. The lead itself may be split differently ("\n\n" or "\n", "\n"): only
    where the gold starts matters."""
    before = prompt + lead
    variant = " " + gold if _space_before(before) else gold
    alone = tokenizer(variant, add_special_tokens=False)["input_ids"]
    joint = _encode(tokenizer, before + variant, chat)
    rest = joint[len(prompt_ids):]
    if joint[: len(prompt_ids)] != list(prompt_ids):
        return alone, False  # merged across the prompt's end: the standalone variant keeps the prompt intact
    cut = next((k for k in range(len(rest) + 1) if tokenizer.decode(rest[:k]) == lead), None)
    if cut is None or cut == len(rest):
        return alone, False  # a token straddles the answer start
    ids = rest[cut:]
    first_joint, first_alone = leading_blank(tokenizer, ids), leading_blank(tokenizer, alone)
    agree = first_joint < len(ids) and first_alone < len(alone) and ids[first_joint] == alone[first_alone]
    return ids, agree


def rank_target(tokenizer: Any, prompt: str, generated: Sequence[int], golds: Sequence[str],
                chat: bool, prompt_ids: Sequence[int] | None = None) -> RankTarget:
    """The answer start after `prompt` given the model's greedy tokens, and the gold token to rank;
    `prompt_ids`, the prompt's own encoding, when the caller already has it."""
    lead = leading_blank(tokenizer, generated)
    lead_ids = list(generated[:lead])
    content = tokenizer.decode(list(generated[lead:]), skip_special_tokens=True)
    begins = begins_with(content, golds)
    if begins and lead < len(generated):
        token = generated[lead]
        return RankTarget(lead_ids, token, tokenizer.decode([token]), "produced", True, True)
    if prompt_ids is None:
        prompt_ids = _encode(tokenizer, prompt, chat)
    ids, boundary_ok = _gold_ids(tokenizer, prompt, prompt_ids, tokenizer.decode(lead_ids), golds[0], chat)
    blank = leading_blank(tokenizer, ids)
    if blank == len(ids):
        return RankTarget(lead_ids, None, "", "gold", boundary_ok, begins)
    return RankTarget(lead_ids + ids[:blank], ids[blank], tokenizer.decode([ids[blank]]), "gold", boundary_ok, begins)
