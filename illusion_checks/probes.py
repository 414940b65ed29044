"""Torch probes: greedy / beam / sampled generation, MC log-likelihoods, gold first-token rank."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.logits_process import TopPLogitsWarper

_ANSWER_LINE_DONE = re.compile(r"\S[^\n]*\n")


@dataclass(frozen=True)
class DecodeSettings:
    """Generation arguments, named as in transformers."""

    max_new_tokens: int = 32
    num_beams: int = 5
    num_samples: int = 10
    top_p: float = 0.9
    stop_at_newline: bool = True
    batch_size: int = 8


@dataclass(frozen=True)
class Encoded:
    """A prompt's token ids and, for each MC option, its continuation ids."""

    prompt_ids: list[int]
    option_ids: list[list[int]]
    gold_token_boundary_ok: bool


class AnswerLineStop(StoppingCriteria):
    """Stop a row once it has produced a non-empty line: the answer is complete."""

    def __init__(self, tokenizer: Any, prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [bool(_ANSWER_LINE_DONE.search(text)) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def answer_text(text: str, stop_at_newline: bool) -> str:
    """The generated answer: its first non-empty line when stopping at newlines."""
    if not stop_at_newline:
        return text.strip()
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def encode_prompt(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    """Token ids of a prompt; a chat-templated prompt already carries its special tokens."""
    return tokenizer(prompt, add_special_tokens=not chat)["input_ids"]


def encode_continuations(tokenizer: Any, prompt: str, prompt_ids: list[int], options: Sequence[str],
                         chat: bool) -> Encoded:
    """Option ids as the model sees them after the prompt: from the joint encoding of
    prompt + " " + option, checked to extend the prompt's own ids (Appendix B's boundary check)."""
    separator = "" if chat else " "
    option_ids, all_ok = [], True
    for option in options:
        joint = encode_prompt(tokenizer, prompt + separator + option, chat)
        if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            option_ids.append(joint[len(prompt_ids):])
        else:
            # The tokenizer merged across the prompt/answer boundary: fall back to the
            # standalone leading-space encoding so the prompt tokens stay identical.
            all_ok = False
            option_ids.append(tokenizer(separator + option, add_special_tokens=False)["input_ids"])
    return Encoded(prompt_ids, option_ids, all_ok)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded batch and its attention mask: every row ends at the same position."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[start:start + size] for start in range(0, len(order), size)]


def _generate(model: Any, tokenizer: Any, rows: Sequence[Sequence[int]], settings: DecodeSettings,
              **kwargs: Any) -> list[str]:
    device = next(model.parameters()).device
    ids, mask = left_pad(rows, tokenizer.pad_token_id, device)
    stopping = StoppingCriteriaList([AnswerLineStop(tokenizer, ids.shape[1])]) if settings.stop_at_newline else None
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=settings.max_new_tokens,
        stopping_criteria=stopping, pad_token_id=tokenizer.pad_token_id, **kwargs,
    )
    texts = tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
    return [answer_text(text, settings.stop_at_newline) for text in texts]


@torch.no_grad()
def greedy(model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: DecodeSettings,
           progress: Callable[[int], None] | None = None) -> list[str]:
    """Greedy continuations, batched over length-sorted prompts."""
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    outputs: list[str] = [""] * len(prompts)
    for batch in _batches(order, settings.batch_size):
        texts = _generate(model, tokenizer, [prompts[i] for i in batch], settings,
                          do_sample=False, num_beams=1, top_p=None, top_k=None, temperature=None)
        for i, text in zip(batch, texts):
            outputs[i] = text
        if progress:
            progress(len(batch))
    return outputs


@torch.no_grad()
def beam(model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: DecodeSettings,
         progress: Callable[[int], None] | None = None) -> list[list[str]]:
    """Beam search with `num_beams` beams returning as many sequences, batched over prompts."""
    n = settings.num_beams
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    outputs: list[list[str]] = [[] for _ in prompts]
    for batch in _batches(order, max(1, settings.batch_size // 2)):
        texts = _generate(model, tokenizer, [prompts[i] for i in batch], settings, do_sample=False, num_beams=n,
                          num_return_sequences=n, top_p=None, top_k=None, temperature=None)
        for j, i in enumerate(batch):
            outputs[i] = texts[j * n:(j + 1) * n]
        if progress:
            progress(len(batch))
    return outputs


def item_seed(seed: int, key: str) -> int:
    """A per-item seed, so samples do not depend on which items share a batch."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)


class SeededGumbel(LogitsProcessor):
    """Gumbel-max sampling with one generator per row: argmax(logits + Gumbel noise) is a draw
    from softmax(logits), and each row's draws depend only on its own seed, not on the batch."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
        return scores.float() + gumbel.to(scores.device)


@torch.no_grad()
def sample(model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: DecodeSettings,
           seeds: Sequence[int], progress: Callable[[int], None] | None = None) -> list[list[str]]:
    """`num_samples` nucleus samples per prompt (top_p, temperature 1, no top-k), seeded per item."""
    n = settings.num_samples
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    outputs: list[list[str]] = [[] for _ in prompts]
    for batch in _batches(order, max(1, settings.batch_size // 4)):
        rows = [prompts[i] for i in batch for _ in range(n)]
        row_seeds = [seeds[i] * 1000 + k for i in batch for k in range(n)]
        processors = LogitsProcessorList([TopPLogitsWarper(settings.top_p), SeededGumbel(row_seeds)])
        texts = _generate(model, tokenizer, rows, settings, do_sample=False, num_beams=1, top_p=None, top_k=None,
                          temperature=None, logits_processor=processors)
        for j, i in enumerate(batch):
            outputs[i] = texts[j * n:(j + 1) * n]
        if progress:
            progress(len(batch))
    return outputs


@dataclass(frozen=True)
class MCResult:
    """Summed option log-probabilities and the gold first token's rank and margin."""

    scores: list[float]
    gold_rank: int
    gold_margin: float


@torch.no_grad()
def score_options(model: Any, encoded: Sequence[Encoded], gold_indices: Sequence[int], pad_id: int,
                  batch_items: int) -> list[MCResult]:
    """Score each option as a continuation of its prompt; the gold row's prompt position also
    gives the next-token distribution for the gold rank. The LM head runs only on scored positions."""
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i].prompt_ids), i))
    results: list[MCResult | None] = [None] * len(encoded)
    for batch in _batches(order, batch_items):
        rows, conts = [], []
        for i in batch:
            for option in encoded[i].option_ids:
                rows.append(encoded[i].prompt_ids + option)
                conts.append(len(option))
        ids, mask = left_pad(rows, pad_id, device)
        keep = max(conts) + 1
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits.float()
        for j, i in enumerate(batch):
            scores = []
            for k in range(len(encoded[i].option_ids)):
                row = j * len(encoded[i].option_ids) + k
                n = conts[row]
                logprobs = torch.log_softmax(logits[row, keep - n - 1: keep - 1], dim=-1)
                targets = ids[row, -n:]
                scores.append(float(logprobs.gather(-1, targets[:, None]).sum()))
                if k == gold_indices[i]:
                    rank, margin = _rank_and_margin(torch.log_softmax(logits[row, keep - n - 1], dim=-1), int(targets[0]))
            results[i] = MCResult(scores, rank, margin)
    return [result for result in results if result is not None]


def _rank_and_margin(logprobs: torch.Tensor, token: int) -> tuple[int, float]:
    target = logprobs[token]
    rank = int((logprobs > target).sum()) + 1
    others = logprobs.clone()
    others[token] = float("-inf")
    return rank, float(target - others.max())
