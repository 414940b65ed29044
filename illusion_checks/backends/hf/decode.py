"""Token-by-token decoding from a cached prefix: greedy, seeded nucleus sampling and beam search.

transformers' `generate` keeps every row of a batch until the slowest one ends, so one row that
runs to `max_new_tokens` makes all its neighbours pay for 32 steps. Here a row leaves the batch
(and its KV cache) the step it finishes, so later steps run only the rows still going. Beam
search is the exception: it is a port of generate's, whose stop is batch-wide, and it keeps
generate's batch so that its beams stay exactly generate's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from illusion_checks.backends.base import answer_line_done, answers
from illusion_checks.backends.hf.kv import fork, keep_rows, make_room, reorder_rows

# (last-position logits of the rows still going, those rows' indices in the batch) -> next tokens
Picker = Callable[[torch.Tensor, list[int]], torch.Tensor]


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch, exactly as transformers' generate derives them."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids that end a sequence, from the generation config as `generate` reads them."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


def pick_greedy(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """The most likely next token (first on ties, as `generate` picks)."""
    return logits.argmax(-1)


class _NewlineTokens:
    """Remembers which token ids decode to text holding a newline: only such a token can finish
    an answer line, so the full row is decoded only then."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.known: dict[int, bool] = {}

    def __contains__(self, token: int) -> bool:
        if token not in self.known:
            self.known[token] = "\n" in self.tokenizer.decode([token])
        return self.known[token]


@torch.no_grad()
def decode(model: Any, tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, pick: Picker,
           max_new_tokens: int, stop_at_newline: bool) -> list[str]:
    """The answers of `decode_tokens` (see there), as text."""
    produced = decode_tokens(model, tokenizer, ids, mask, cache, pick, max_new_tokens, stop_at_newline)
    return answers(tokenizer, produced, stop_at_newline)


@torch.no_grad()
def decode_tokens(model: Any, tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, pick: Picker,
                  max_new_tokens: int, stop_at_newline: bool) -> list[list[int]]:
    """Continue left-padded rows whose KV cache holds every token but the last (the cache is
    consumed); returns each row's new token ids. A row ends at an end-of-sequence token (kept as
    its last id), after `max_new_tokens`, or, when `stop_at_newline`, once it has produced a
    non-empty line; ended rows leave the batch. `pick` sees raw logits: a model's
    generation-config extras (repetition penalty and the like) are not applied, so every model
    gets the same probe."""
    device = ids.device
    eos, newline = eos_token_ids(model, tokenizer), _NewlineTokens(tokenizer)
    produced: list[list[int]] = [[] for _ in range(ids.shape[0])]
    live = list(range(ids.shape[0]))
    step_ids, pos = ids[:, -1:], positions(mask)[:, -1:]
    make_room(cache, max_new_tokens)
    for step in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, cache=cache,
                       use_cache=True).logits[:, -1]
        chosen = pick(logits, live)
        keep = []
        for j, token in enumerate(chosen.tolist()):
            row = produced[live[j]]
            row.append(token)
            finished = token in eos or (stop_at_newline and token in newline
                                        and answer_line_done(tokenizer.decode(row, skip_special_tokens=True)))
            if not finished:
                keep.append(j)
        if not keep or step + 1 == max_new_tokens:
            break
        if len(keep) < len(live):
            # Drop finished rows everywhere: the cache, the mask and the positions.
            index = torch.tensor(keep, device=device)
            keep_rows(cache, index)
            mask, pos, chosen = mask[index], pos[index], chosen[index]
            live = [live[j] for j in keep]
        step_ids = chosen[:, None]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
        pos = pos + 1
    return produced


class SeededNucleus:
    """Nucleus (top-p) sampling with one generator per row, done as Gumbel-max over the nucleus:
    each row's draw depends only on its own seed, never on which rows share the batch.

    Sorting the whole vocabulary (262k for Gemma) every step cost more than the model itself, so
    each row sorts only the tokens above a probability floor, once those alone hold `top_p` of
    the mass: every token below the floor then has at least `top_p` ranked above it, so it is
    outside the nucleus, and the result is exact."""

    FLOORS = (1e-4, 1e-6)

    def __init__(self, top_p: float, seeds: Sequence[int]) -> None:
        self.top_p = top_p
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def _ranked(self, probs: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per row, its top tokens in descending order: enough of them to hold the nucleus."""
        ranked: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * probs.shape[0]
        for floor in self.FLOORS:
            pending = [row for row, done in enumerate(ranked) if done is None]
            if not pending:
                break
            rows = probs if len(pending) == probs.shape[0] else probs[pending]  # no copy in the usual case
            above = rows > floor
            mass = torch.where(above, rows, 0.0).sum(-1).tolist()
            for j, row in enumerate(pending):
                if mass[j] >= self.top_p:
                    candidates = above[j].nonzero().squeeze(-1)
                    values, order = probs[row, candidates].sort(descending=True)
                    ranked[row] = (values, candidates[order])
        return [r if r is not None else probs[row].sort(descending=True) for row, r in enumerate(ranked)]

    def __call__(self, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """One draw per row of `logits`; `rows` says whose generator each row uses."""
        ranked = self._ranked(torch.softmax(logits.float(), dim=-1))
        chosen = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
        for j, (values, index) in enumerate(ranked):
            # Keep a token while the mass ranked above it is below top_p (transformers' rule).
            kept = int(((values.cumsum(-1) - values) < self.top_p).sum())
            uniform = torch.rand(kept, generator=self.generators[rows[j]]).clamp(1e-20, 1.0 - 1e-7)
            noisy = values[:kept].log() - torch.log(-torch.log(uniform.to(logits.device)))
            chosen[j] = index[int(noisy.argmax())]
        return chosen


# Beam search: transformers' `_beam_search` (5.24) ported step by step onto the forked prefix cache.

_NEG = -1.0e9  # generate's "never pick this" score offset


@dataclass(frozen=True)
class _BeamRule:
    """What generate's beam search reads from its generation config, fixed for one call."""

    num_beams: int
    keep: int  # candidates kept per prompt and step: enough that `num_beams` of them can go on
    eos: torch.Tensor
    length_penalty: float
    early_stopping: bool | str
    max_new_tokens: int
    stop_at_newline: bool


def _beam_rule(model: Any, num_beams: int, max_new_tokens: int, stop_at_newline: bool,
               device: torch.device) -> _BeamRule:
    """generate's settings: its end-of-sequence ids come from the generation config alone, and an
    unset `length_penalty` / `early_stopping` takes generate's default (1.0 / False)."""
    config = model.generation_config
    eos = config.eos_token_id
    eos = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
    length_penalty = 1.0 if config.length_penalty is None else config.length_penalty
    early_stopping = False if config.early_stopping is None else config.early_stopping
    return _BeamRule(num_beams, max(2, 1 + len(eos)) * num_beams, torch.tensor(eos, dtype=torch.long, device=device),
                     length_penalty, early_stopping, max_new_tokens, stop_at_newline)


@dataclass
class _Beams:
    """generate's beam-search tensors over the new tokens only: per prompt, the running beams and
    the finished hypotheses (best first; an empty slot scores -1e9 and has length 0)."""

    running: torch.Tensor  # [prompts, beams, max_new_tokens] token ids (0 past a beam's end)
    running_scores: torch.Tensor  # [prompts, beams] summed log-probabilities
    done: torch.Tensor  # [prompts, beams, max_new_tokens]
    done_scores: torch.Tensor  # [prompts, beams] length-normalised
    done_lengths: torch.Tensor  # [prompts, beams]
    is_done: torch.Tensor  # [prompts, beams] whether the slot holds a finished hypothesis
    improvable: torch.Tensor  # [prompts, 1] whether the prompt's finished hypotheses can still improve

    @classmethod
    def start(cls, prompts: int, rule: _BeamRule, device: torch.device) -> "_Beams":
        n = rule.num_beams
        tokens = torch.zeros((prompts, n, rule.max_new_tokens), dtype=torch.long, device=device)
        scores = torch.zeros((prompts, n), dtype=torch.float, device=device)
        scores[:, 1:] = _NEG  # only the first beam's tokens count at the first step
        return cls(tokens, scores, tokens.clone(), torch.full((prompts, n), _NEG, dtype=torch.float, device=device),
                   torch.zeros((prompts, n), dtype=torch.long, device=device),
                   torch.zeros((prompts, n), dtype=torch.bool, device=device),
                   torch.ones((prompts, 1), dtype=torch.bool, device=device))


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per prompt, the beams `index` picks (generate's `_gather_beams`)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def _hits(tokenizer: Any, candidates: torch.Tensor, step: int, rule: _BeamRule) -> torch.Tensor:
    """Which candidates end here, by generate's stopping criteria: the length limit, an
    end-of-sequence last token, and (when `stop_at_newline`) a complete answer line."""
    prompts, keep = candidates.shape[:2]
    last = candidates[:, :, step]
    hits = torch.isin(last, rule.eos) | (step + 1 >= rule.max_new_tokens)
    if rule.stop_at_newline:
        texts = tokenizer.batch_decode(candidates[:, :, :step + 1].reshape(prompts * keep, -1).tolist(),
                                       skip_special_tokens=True)
        lines = torch.tensor([answer_line_done(text) for text in texts], device=hits.device)
        hits = hits | lines.view(prompts, keep)
    return hits


def _candidates(beams: _Beams, log_probs: torch.Tensor, step: int,
                rule: _BeamRule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per prompt, the `keep` best continuations over all its beams (generate's
    `_get_top_k_continuations`): their summed log-probabilities, their tokens so far, and the
    cache row of the beam each continues."""
    prompts, n = beams.running_scores.shape
    scores = (log_probs.view(prompts, n, -1) + beams.running_scores[:, :, None]).reshape(prompts, -1)
    top_scores, top = torch.topk(scores, k=rule.keep)
    vocab = scores.shape[-1] // n
    parent = top // vocab
    tokens = _gather(beams.running, parent)
    tokens[:, :, step] = top % vocab
    rows = parent + torch.arange(prompts, device=top.device).view(-1, 1) * n
    return top_scores, tokens, rows


def _advance(beams: _Beams, top_scores: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor, hits: torch.Tensor,
             step: int, rule: _BeamRule) -> torch.Tensor:
    """One step of bookkeeping, as generate orders it: the best `num_beams` candidates that did
    not end run on; those among the best `num_beams` that ended join the finished hypotheses when
    their length-normalised score beats one there; then the done heuristic. Returns the cache
    rows the running beams continue."""
    n = rule.num_beams
    running_scores = top_scores + hits.to(torch.float32) * _NEG
    going = torch.topk(running_scores, k=n)[1]
    beams.running, beams.running_scores = _gather(tokens, going), _gather(running_scores, going)
    ended = hits & (torch.arange(rule.keep, device=hits.device) < n)[None, :]
    scores = top_scores / ((step + 1) ** rule.length_penalty)
    full = torch.all(beams.is_done, dim=-1, keepdim=True) & (rule.early_stopping is True)
    scores += full.to(torch.float32) * _NEG
    scores += (~beams.improvable).to(torch.float32) * _NEG
    scores += (~ended) * _NEG
    best = torch.topk(torch.cat((beams.done_scores, scores), dim=1), k=n)[1]
    lengths = torch.full_like(tokens[:, :, 0], step + 1)
    beams.done = _gather(torch.cat((beams.done, tokens), dim=1), best)
    beams.done_scores = _gather(torch.cat((beams.done_scores, scores), dim=1), best)
    beams.done_lengths = _gather(torch.cat((beams.done_lengths, lengths), dim=1), best)
    beams.is_done = _gather(torch.cat((beams.is_done, ended), dim=1), best)
    length = rule.max_new_tokens if rule.early_stopping == "never" and rule.length_penalty > 0.0 else step + 1
    best_running = beams.running_scores[:, :1] / (length ** rule.length_penalty)
    worst_done = torch.where(beams.is_done, torch.min(beams.done_scores, dim=1, keepdim=True)[0], _NEG)
    beams.improvable = beams.improvable & torch.any(best_running > worst_done, dim=-1, keepdim=True)
    return _gather(rows, going)


def _search_over(beams: _Beams, hits: torch.Tensor, rule: _BeamRule) -> bool:
    """generate's whole-batch stop: no prompt can improve, every beam is finished under
    `early_stopping=True`, or every candidate of every prompt ended (the length limit)."""
    improvable = bool(beams.improvable.any())
    open_beam = not (bool(beams.is_done.all()) and rule.early_stopping is True)
    return not (improvable and open_beam and not bool(hits.all()))


@torch.no_grad()
def beam_search(model: Any, tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, num_beams: int,
                max_new_tokens: int, stop_at_newline: bool) -> list[list[list[int]]]:
    """Per prompt, `num_beams` beam-search continuations (new token ids; an end-of-sequence token
    is kept as a beam's last id), best first: what `generate(num_beams=n, num_return_sequences=n,
    do_sample=False)` returns, computed step by step on a fork of the prefix `cache` (left-padded
    rows whose cache holds every token but the last; `cache` itself is left as it was).

    A port of transformers 5.24's `_beam_search`: log-softmax in float32, the best
    `max(2, 1 + #eos) * num_beams` candidates per prompt, candidates that end (end-of-sequence,
    `max_new_tokens`, a complete answer line when `stop_at_newline`) become finished hypotheses
    scored by sum / length ** `length_penalty`, and generate's done heuristic; `length_penalty`,
    `early_stopping` and the end-of-sequence ids come from the generation config (defaults 1.0,
    False). Its stop is batch-wide, so every prompt stays in the batch until the last ends, as
    in generate. Applied to the scores: nothing but the log-softmax. generate would also apply
    a generation config's logits processors (repetition penalty, no-repeat n-grams, min length,
    bad words, suppressed or forced tokens...); none are set for the models this package ships
    or tests, and, as in `decode_tokens`, none are applied here, so every model gets the same
    probe. generate pads shorter beams with the pad (or end-of-sequence) id, which decoding
    with `skip_special_tokens` drops; here each beam has its own length."""
    device, prompts = ids.device, ids.shape[0]
    rule = _beam_rule(model, num_beams, max_new_tokens, stop_at_newline, device)
    beams = _Beams.start(prompts, rule, device)
    cache = fork(cache, None, num_beams)
    make_room(cache, max_new_tokens)  # steps write in place; reordering keeps the room
    mask = mask.repeat_interleave(num_beams, 0)
    step_ids, pos = ids[:, -1:].repeat_interleave(num_beams, 0), positions(mask)[:, -1:]
    for step in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, cache=cache,
                       use_cache=True).logits[:, -1].to(copy=True, dtype=torch.float32)
        top_scores, tokens, rows = _candidates(beams, torch.log_softmax(logits, dim=-1), step, rule)
        hits = _hits(tokenizer, tokens, step, rule)
        rows = _advance(beams, top_scores, tokens, rows, hits, step, rule)
        if _search_over(beams, hits, rule):
            break
        reorder_rows(cache, rows.reshape(-1))
        step_ids = beams.running[:, :, step].reshape(-1, 1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        pos = pos + 1
    lengths = beams.done_lengths.tolist()
    return [[beams.done[j, k, :lengths[j][k]].tolist() for k in range(num_beams)] for j in range(prompts)]
