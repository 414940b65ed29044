"""The backend seam: what every engine (in-process transformers, vLLM, a served endpoint) must do
for the probes, the settings it is given, and the answer-line rule all of them share.

Core modules talk to a model only through this file's `Backend`; nothing here imports an engine."""

from __future__ import annotations

import re
from dataclasses import dataclass

from illusion_checks.spec import DEFAULT_BATCH_SIZE

_ANSWER_LINE_DONE = re.compile(r"\S[^\n]*\n")


@dataclass(frozen=True)
class DecodeSettings:
    """Generation arguments, named as in transformers."""

    max_new_tokens: int = 32
    num_beams: int = 5
    num_samples: int = 10
    top_p: float = 0.9
    stop_at_newline: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    def decode_rows(self) -> int:
        """Rows per beam or sampling call: decoding activations are one token per row, so a call
        holds several prompts' worth of beams or samples."""
        return 4 * self.batch_size


def answer_text(text: str, stop_at_newline: bool) -> str:
    """The generated answer: its first non-empty line when stopping at newlines."""
    if not stop_at_newline:
        return text.strip()
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def answer_line_done(text: str) -> bool:
    """Whether generated text already holds a complete non-empty line: the answer is over."""
    return bool(_ANSWER_LINE_DONE.search(text))


