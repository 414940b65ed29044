"""Torch probes: greedy / beam / sampled generation, MC log-likelihoods, gold first-token rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from illusion_checks.answer_start import RankTarget, rank_target
from illusion_checks.backends.base import DecodeSettings, answers
from illusion_checks.prompts import Encoded
from illusion_checks.backends.hf.decode import SeededNucleus, beam_search, pick_greedy, positions
from illusion_checks.backends.hf.kv import fork
from illusion_checks.backends.hf.stream import Chunk, decode_stream, decode_tokens

__all__ = ["FFProbes", "MCResult", "Prefix", "batches", "beam", "ff_probes", "greedy", "greedy_tokens", "prefill", "samples",
           "score_rows"]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded batch and its attention mask: every row ends at the same position."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[start:start + size] for start in range(0, len(order), size)]


@dataclass
class Prefix:
    """Left-padded prompts whose KV cache holds every token but the last: each probe that
    continues a prompt (greedy, beam, samples, MC options) forks it instead of re-prefilling."""

    ids: torch.Tensor
    mask: torch.Tensor
    cache: Any

    def rows(self, index: Sequence[int], repeat: int = 1, room: int | None = None) -> "Prefix":
        """A fork holding `index` rows, each repeated `repeat` times (as generate expands them; the
        ids and mask too), its full-attention layers with room for `room` decoded tokens when given."""
        select = torch.tensor(list(index), device=self.ids.device)
        every_row = list(index) == list(range(self.ids.shape[0]))  # then the fork shares every tensor
        cache = fork(self.cache, None if every_row else select, repeat, room)
        ids, mask = self.ids[select], self.mask[select]
        if repeat > 1:
            ids, mask = ids.repeat_interleave(repeat, 0), mask.repeat_interleave(repeat, 0)
        return Prefix(ids, mask, cache)


@torch.no_grad()
def prefill(model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> Prefix:
    """Run every prompt token but the last once; the LM head runs on one position only."""
    device = next(model.parameters()).device
    ids, mask = left_pad(rows, pad_id, device)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions(mask)[:, :-1],
                use_cache=True, logits_to_keep=1)
    return Prefix(ids, mask, out.cache)


@torch.no_grad()
def greedy_tokens(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
                  advance: Callable[[int], None] | None = None) -> list[list[int]]:
    """Greedy continuations' token ids through one continuously refilled batch of `batch_size`
    rows (`stream.decode_stream`): the prompts queue shortest first, and each refill prefills the
    next ones. `advance(1)` hears each prompt finish."""
    queue = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))

    def refill(free: int) -> Chunk | None:
        take = queue[:free]
        del queue[:len(take)]
        if not take:
            return None
        prefix = prefill(model, [prompts[i] for i in take], tokenizer.pad_token_id)
        return Chunk(prefix.ids, prefix.mask, prefix.cache, take)

    produced = decode_stream(model, tokenizer, refill, settings.batch_size, pick_greedy, settings.max_new_tokens,
                             settings.stop_at_newline, advance and (lambda key: advance(1)))
    return [produced[i] for i in range(len(prompts))]


def greedy(model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: DecodeSettings,
           advance: Callable[[int], None] | None = None) -> list[str]:
    """Greedy answers (`greedy_tokens`, the answer-line rule applied)."""
    return answers(tokenizer, greedy_tokens(model, tokenizer, prompts, settings, advance), settings.stop_at_newline)


def beam(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings) -> list[list[str]]:
    """`num_beams` beam-search answers per prompt, best first (`decode.beam_search`, on a fork of
    the prefix cache)."""
    tokens = beam_search(model, tokenizer, prefix.ids, prefix.mask, prefix.cache, settings.num_beams,
                         settings.max_new_tokens, settings.stop_at_newline)
    return [answers(tokenizer, beams, settings.stop_at_newline) for beams in tokens]


def samples(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings, seeds: Sequence[int],
            width: int | None = None) -> list[list[str]]:
    """`num_samples` seeded nucleus samples per prompt of `prefix`, decoded in one continuously
    refilled batch of `width` rows (default: all of them), each prompt's rows forked from its cache
    when they join; a row's draws depend only on its seed (`seeds[j] * 1000 + k`)."""
    n, rows = settings.num_samples, prefix.ids.shape[0]
    queue = list(range(rows))

    def refill(free: int) -> Chunk | None:
        take = queue[:max(1, free // n)] if queue else []
        del queue[:len(take)]
        if not take:
            return None
        part = prefix.rows(take, repeat=n, room=settings.max_new_tokens)
        return Chunk(part.ids, part.mask, part.cache, [j * n + k for j in take for k in range(n)])

    row_seeds = [seeds[j] * 1000 + k for j in range(rows) for k in range(n)]
    produced = decode_stream(model, tokenizer, refill, width or rows * n, SeededNucleus(settings.top_p, row_seeds),
                             settings.max_new_tokens, settings.stop_at_newline)
    texts = answers(tokenizer, [produced[r] for r in range(rows * n)], settings.stop_at_newline)
    return [texts[j * n:(j + 1) * n] for j in range(rows)]


@dataclass(frozen=True)
class MCResult:
    """Summed option log-probabilities, and the rank and margin at each position of the gold's
    path at the answer start (empty when the gold has no content token)."""

    scores: list[float]
    path: list[tuple[int, float]]


def score_rows(model: Any, prefix: Prefix, option_ids: Sequence[Sequence[Sequence[int]]],
               ranked: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[MCResult]:
    """Each option as a continuation of its cached prompt, plus one row per prompt that continues
    it with `ranked[j]`'s conditioned ids (the model's own leading whitespace) and then its path,
    to read the rank of each path token at its position; all batched on forks of the prompt's cache."""
    n_opt = len(option_ids[0])
    n_rows = n_opt + 1
    cache = prefix.rows(range(prefix.ids.shape[0]), repeat=n_rows).cache
    conts = [c for options, (conditioned, path) in zip(option_ids, ranked)
             for c in (*options, [*conditioned, *path] or [0])]
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
    return [_read_scores(logits, j * n_rows, options, ranked[j]) for j, options in enumerate(option_ids)]


def _read_scores(logits: torch.Tensor, row: int, options: Sequence[Sequence[int]],
                 ranked: tuple[Sequence[int], Sequence[int]]) -> MCResult:
    scores = []
    for k, cont in enumerate(options):
        logprobs = torch.log_softmax(logits[row + k, :len(cont)].float(), dim=-1)
        wanted = torch.tensor(cont, device=logprobs.device)
        scores.append(float(logprobs.gather(-1, wanted[:, None]).sum()))
    conditioned, path = ranked
    logprobs = torch.log_softmax(logits[row + len(options), len(conditioned):len(conditioned) + len(path)].float(), -1)
    return MCResult(scores, [_rank_and_margin(logprobs[k], token) for k, token in enumerate(path)])


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
    for batch in batches(order, settings.batch_size):
        prefix = prefill(model, [encoded[i].prompt_ids for i in batch], tokenizer.pad_token_id)
        fork = prefix.rows(range(len(batch)))
        tokens = decode_tokens(model, tokenizer, fork.ids, fork.mask, fork.cache, pick_greedy,
                               settings.max_new_tokens, settings.stop_at_newline)
        greedy_out = answers(tokenizer, tokens, settings.stop_at_newline)
        targets = [rank_target(tokenizer, encoded[i].prompt, tokens[j], golds[i], encoded[i].chat,
                               encoded[i].prompt_ids) for j, i in enumerate(batch)]
        mc = []
        for part in batches(list(range(len(batch))), max(1, settings.batch_size // 2)):
            mc += score_rows(model, prefix.rows(part), [encoded[batch[j]].option_ids for j in part],
                             [(targets[j].conditioned_ids, targets[j].path) for j in part])
        reached = [j for j, i in enumerate(batch) if reach[i]]
        beams: dict[int, list[str]] = {}
        sampled: dict[int, list[str]] = {}
        # A decoding step costs about the same for 16 rows as for 64 (reading the weights dominates),
        # so beam and sampling calls take as many items as fill `decode_rows`.
        for part in batches(reached, max(1, settings.decode_rows // settings.num_beams)):
            beams.update(zip(part, beam(model, tokenizer, prefix.rows(part), settings)))
        if reached:
            sampled.update(zip(reached, samples(model, tokenizer, prefix.rows(reached), settings,
                                                [seeds[batch[j]] for j in reached], settings.decode_rows)))
        for j, i in enumerate(batch):
            results[i] = FFProbes(greedy_out[j], mc[j], targets[j], beams.get(j), sampled.get(j))
        if progress:
            progress(len(batch))
    return [r for r in results if r is not None]


def _rank_and_margin(logprobs: torch.Tensor, token: int) -> tuple[int, float]:
    """The token's rank (how many tokens are at least as likely, itself included: the one tie rule,
    `Position` in backends/base.py) and its margin over the best other token."""
    target = logprobs[token]
    rank = int((logprobs >= target).sum())
    others = logprobs.clone()
    others[token] = float("-inf")
    return rank, float(target - others.max())
