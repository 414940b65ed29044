"""Torch probes: greedy / beam / sampled generation, MC log-likelihoods, gold first-token rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from illusion_checks.answer_start import RankTarget, rank_target
from illusion_checks.backends.base import DecodeSettings, answer_line_done, answer_text
from illusion_checks.prompts import Encoded
from illusion_checks.backends.hf.decode import (
    SeededNucleus, answers, decode, decode_tokens, pick_greedy, positions,
)
from illusion_checks.backends.hf.kv import fork, make_room

__all__ = ["FFProbes", "MCResult", "Prefix", "ff_probes", "greedy", "prefill"]


class AnswerLineStop(StoppingCriteria):
    """Stop a row once it has produced a non-empty line: the answer is complete."""

    def __init__(self, tokenizer: Any, prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [answer_line_done(text) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


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


@dataclass
class Prefix:
    """Left-padded prompts whose KV cache holds every token but the last: each probe that
    continues a prompt (greedy, beam, samples, MC options) forks it instead of re-prefilling."""

    ids: torch.Tensor
    mask: torch.Tensor
    cache: Any

    def rows(self, index: Sequence[int], repeat: int = 1) -> "Prefix":
        """A fork holding `index` rows, each repeated `repeat` times (as generate expands them)."""
        select = torch.tensor(list(index), device=self.ids.device)
        every_row = list(index) == list(range(self.ids.shape[0]))  # then the fork shares every tensor
        cache = fork(self.cache, None if every_row else select, repeat)
        return Prefix(self.ids[select], self.mask[select], cache)


@torch.no_grad()
def prefill(model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> Prefix:
    """Run every prompt token but the last once; the LM head runs on one position only."""
    device = next(model.parameters()).device
    ids, mask = left_pad(rows, pad_id, device)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions(mask)[:, :-1],
                use_cache=True, logits_to_keep=1)
    return Prefix(ids, mask, out.cache)


def _generate(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings, **kwargs: Any) -> list[str]:
    """Continue a prefix with transformers' generate (it feeds only the uncached last token)."""
    width = prefix.ids.shape[1]
    stopping = StoppingCriteriaList([AnswerLineStop(tokenizer, width)]) if settings.stop_at_newline else None
    out = model.generate(
        input_ids=prefix.ids, attention_mask=prefix.mask, cache=prefix.cache,
        max_new_tokens=settings.max_new_tokens, stopping_criteria=stopping, pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [answer_text(text, settings.stop_at_newline) for text in texts]


GREEDY = dict(do_sample=False, num_beams=1, top_p=None, top_k=None, temperature=None)


def _continue(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings,
              pick: Callable[[torch.Tensor, list[int]], torch.Tensor] = pick_greedy) -> list[str]:
    """Decode a prefix token by token (its cache is consumed), finished rows leaving the batch."""
    return decode(model, tokenizer, prefix.ids, prefix.mask, prefix.cache, pick, settings.max_new_tokens,
                  settings.stop_at_newline)


@torch.no_grad()
def greedy(model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: DecodeSettings,
           progress: Callable[[int], None] | None = None) -> list[str]:
    """Greedy continuations, batched over length-sorted prompts."""
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    outputs: list[str] = [""] * len(prompts)
    for batch in _batches(order, settings.batch_size):
        prefix = prefill(model, [prompts[i] for i in batch], tokenizer.pad_token_id)
        for i, text in zip(batch, _continue(model, tokenizer, prefix, settings)):
            outputs[i] = text
        if progress:
            progress(len(batch))
    return outputs


def _beam(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings) -> list[list[str]]:
    n = settings.num_beams
    expanded = prefix.rows(range(prefix.ids.shape[0]), repeat=n)
    make_room(expanded.cache, settings.max_new_tokens)  # beam steps then write in place, not by concatenation
    expanded = Prefix(prefix.ids, prefix.mask, expanded.cache)  # generate expands ids and mask itself
    texts = _generate(model, tokenizer, expanded, settings, do_sample=False, num_beams=n,
                      num_return_sequences=n, top_p=None, top_k=None, temperature=None)
    return [texts[j * n:(j + 1) * n] for j in range(prefix.ids.shape[0])]


def _samples(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings, seeds: Sequence[int]) -> list[list[str]]:
    n, rows = settings.num_samples, prefix.ids.shape[0]
    part = prefix.rows(range(rows), repeat=n)
    part = Prefix(part.ids.repeat_interleave(n, 0), part.mask.repeat_interleave(n, 0), part.cache)
    row_seeds = [seeds[j] * 1000 + k for j in range(rows) for k in range(n)]
    texts = _continue(model, tokenizer, part, settings, SeededNucleus(settings.top_p, row_seeds))
    return [texts[j * n:(j + 1) * n] for j in range(rows)]


@dataclass(frozen=True)
class MCResult:
    """Summed option log-probabilities, and the gold first content token's rank and margin at the
    answer start (None when the gold has no content token)."""

    scores: list[float]
    gold_rank: int | None
    gold_margin: float | None


def _score_options(model: Any, prefix: Prefix, encoded: Sequence[Encoded],
                   targets: Sequence[RankTarget]) -> list[MCResult]:
    """Each option as a continuation of its cached prompt, plus one row per prompt that continues
    it to the answer start (the model's leading whitespace, then the gold's) for the gold rank;
    all batched on forks of the prompt's cache."""
    n_opt = len(encoded[0].option_ids)
    n_rows = n_opt + 1
    cache = prefix.rows(range(prefix.ids.shape[0]), repeat=n_rows).cache
    conts = [c for enc, target in zip(encoded, targets)
             for c in (*enc.option_ids, [*target.conditioned_ids, target.token or 0])]
    width = 1 + max(len(c) for c in conts)
    last = prefix.ids[:, -1].repeat_interleave(n_rows)
    ids = torch.full((len(conts), width), 0, dtype=torch.long, device=prefix.ids.device)
    new_mask = torch.zeros_like(ids)
    for r, cont in enumerate(conts):
        ids[r, 0] = last[r]
        ids[r, 1:1 + len(cont)] = torch.tensor(cont, dtype=torch.long)
        new_mask[r, :1 + len(cont)] = 1
    past_mask = prefix.mask[:, :-1].repeat_interleave(n_rows, 0)
    start = positions(prefix.mask)[:, -1].repeat_interleave(n_rows)
    logits = model(input_ids=ids, attention_mask=torch.cat([past_mask, new_mask], 1),
                   position_ids=start[:, None] + torch.arange(width, device=ids.device),
                   cache=cache, use_cache=True).logits
    results = []
    for j, (enc, target) in enumerate(zip(encoded, targets)):
        scores = []
        for k, cont in enumerate(enc.option_ids):
            logprobs = torch.log_softmax(logits[j * n_rows + k, :len(cont)].float(), dim=-1)
            wanted = torch.tensor(cont, device=logprobs.device)
            scores.append(float(logprobs.gather(-1, wanted[:, None]).sum()))
        rank, margin = None, None
        if target.token is not None:
            at = len(target.conditioned_ids)
            logprobs = torch.log_softmax(logits[j * n_rows + n_opt, at].float(), dim=-1)
            rank, margin = _rank_and_margin(logprobs, target.token)
        results.append(MCResult(scores, rank, margin))
    return results


@dataclass(frozen=True)
class FFProbes:
    """Everything read off one FF prompt: greedy output, MC, gold rank (and what was ranked), beam
    and samples."""

    output: str
    mc: MCResult
    target: RankTarget
    beam: list[str] | None
    sample: list[str] | None


@torch.no_grad()
def ff_probes(model: Any, tokenizer: Any, encoded: Sequence[Encoded], golds: Sequence[Sequence[str]],
              settings: DecodeSettings, seeds: Sequence[int], reach: Sequence[bool],
              progress: Callable[[int], None] | None = None) -> list[FFProbes]:
    """One prefill per FF prompt serves greedy FF, MC scoring, the gold rank at the greedy answer's
    start, beam-5 and sampling. `golds[i]` is item i's gold then its aliases; `reach[i]` says
    whether item i gets the beam and sampling probes."""
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i].prompt_ids), i))
    results: list[FFProbes | None] = [None] * len(encoded)
    for batch in _batches(order, settings.batch_size):
        prefix = prefill(model, [encoded[i].prompt_ids for i in batch], tokenizer.pad_token_id)
        fork = prefix.rows(range(len(batch)))
        tokens = decode_tokens(model, tokenizer, fork.ids, fork.mask, fork.cache, pick_greedy,
                               settings.max_new_tokens, settings.stop_at_newline)
        greedy_out = answers(tokenizer, tokens, settings.stop_at_newline)
        targets = [rank_target(tokenizer, encoded[i].prompt, tokens[j], golds[i], encoded[i].chat,
                               encoded[i].prompt_ids) for j, i in enumerate(batch)]
        mc = []
        for part in _batches(list(range(len(batch))), max(1, settings.batch_size // 2)):
            mc += _score_options(model, prefix.rows(part), [encoded[batch[j]] for j in part],
                                 [targets[j] for j in part])
        reached = [j for j, i in enumerate(batch) if reach[i]]
        beams: dict[int, list[str]] = {}
        samples: dict[int, list[str]] = {}
        # A decoding step costs about the same for 16 rows as for 64 (reading the weights dominates),
        # so beam and sampling calls take as many items as fill `decode_rows`.
        for part in _batches(reached, max(1, settings.decode_rows // settings.num_beams)):
            beams.update(zip(part, _beam(model, tokenizer, prefix.rows(part), settings)))
        for part in _batches(reached, max(1, settings.decode_rows // settings.num_samples)):
            samples.update(zip(part, _samples(model, tokenizer, prefix.rows(part), settings,
                                              [seeds[batch[j]] for j in part])))
        for j, i in enumerate(batch):
            results[i] = FFProbes(greedy_out[j], mc[j], targets[j], beams.get(j), samples.get(j))
        if progress:
            progress(len(batch))
    return [r for r in results if r is not None]


def _rank_and_margin(logprobs: torch.Tensor, token: int) -> tuple[int, float]:
    target = logprobs[token]
    rank = int((logprobs > target).sum()) + 1
    others = logprobs.clone()
    others[token] = float("-inf")
    return rank, float(target - others.max())
