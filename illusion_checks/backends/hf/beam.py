"""Beam search on any engine that gives the next token's log-probabilities: transformers 5.24's
`_beam_search`, ported step by step, with the answer-line stop. The HF engine feeds it from its
forked prefix cache (hf/decode.py), the vLLM engine from one-token requests on prefix-cached prompts
(vllm/backend.py; this module needs torch, not transformers): both search the same beams.

The rule: log-probabilities in float32; per prompt, the best `max(2, 1 + #eos) * num_beams`
candidates over all its beams; a candidate that ends (an end-of-sequence id, `max_new_tokens`, a
complete answer line when `stop_at_newline`) becomes a finished hypothesis scored by
sum / length ** `length_penalty`; generate's done heuristic; `length_penalty` and `early_stopping`
from the generation config (defaults 1.0, False). The stop is batch-wide, as in generate, and a
prompt's beams do not depend on the others in its batch: a prompt that cannot improve keeps its
finished hypotheses while the others run on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from illusion_checks.backends.base import answer_line_done

# (step, the candidate rows the running beams continue (None at step 0: every beam is the prompt),
# the running beams' tokens so far [prompts * num_beams, step], which prompts can still change their
# result [prompts]) -> the running beams' next-token log-probabilities [prompts * num_beams,
# vocabulary], float32. -inf where an engine gives only its top k; an engine may give -inf for every
# row of a prompt that cannot change its result: its finished hypotheses are final.
NextLogProbs = Callable[[int, Optional[torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]

_NEG = -1.0e9  # generate's "never pick this" score offset


@dataclass(frozen=True)
class BeamRule:
    """What generate's beam search reads from its generation config, fixed for one call."""

    num_beams: int
    keep: int  # candidates kept per prompt and step: enough that `num_beams` of them can go on
    eos: torch.Tensor
    length_penalty: float
    early_stopping: bool | str
    max_new_tokens: int
    stop_at_newline: bool


def beam_rule(generation_config: Any, eos: Sequence[int], num_beams: int, max_new_tokens: int,
              stop_at_newline: bool, device: torch.device) -> BeamRule:
    """generate's settings from a generation config: an unset `length_penalty` / `early_stopping`
    takes generate's default (1.0 / False); `eos` are the ids that end a beam."""
    length_penalty = 1.0 if generation_config.length_penalty is None else generation_config.length_penalty
    early_stopping = False if generation_config.early_stopping is None else generation_config.early_stopping
    ends = torch.tensor(sorted(eos), dtype=torch.long, device=device)
    return BeamRule(num_beams, max(2, 1 + len(eos)) * num_beams, ends, length_penalty, early_stopping, max_new_tokens,
                    stop_at_newline)


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
    def start(cls, prompts: int, rule: BeamRule, device: torch.device) -> "_Beams":
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


def _hits(tokenizer: Any, candidates: torch.Tensor, step: int, rule: BeamRule) -> torch.Tensor:
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
                rule: BeamRule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
             step: int, rule: BeamRule) -> torch.Tensor:
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


def _search_over(beams: _Beams, hits: torch.Tensor, rule: BeamRule) -> bool:
    """generate's whole-batch stop: no prompt can improve, every beam is finished under
    `early_stopping=True`, or every candidate of every prompt ended (the length limit)."""
    improvable = bool(beams.improvable.any())
    open_beam = not (bool(beams.is_done.all()) and rule.early_stopping is True)
    return not (improvable and open_beam and not bool(hits.all()))


def search(tokenizer: Any, prompts: int, rule: BeamRule, next_log_probs: NextLogProbs) -> list[list[list[int]]]:
    """Per prompt, `num_beams` continuations (new token ids; an end-of-sequence id is kept as a beam's
    last), best first: what `generate(num_beams=n, num_return_sequences=n, do_sample=False)` returns.
    Generate pads shorter beams with the pad (or end-of-sequence) id, which decoding with
    `skip_special_tokens` drops; here each beam has its own length."""
    beams = _Beams.start(prompts, rule, rule.eos.device)
    rows = None
    for step in range(rule.max_new_tokens):
        so_far = beams.running[:, :, :step].reshape(prompts * rule.num_beams, step)
        log_probs = next_log_probs(step, rows, so_far, beams.improvable.view(-1))
        top_scores, tokens, candidates = _candidates(beams, log_probs, step, rule)
        hits = _hits(tokenizer, tokens, step, rule)
        rows = _advance(beams, top_scores, tokens, candidates, hits, step, rule)
        if _search_over(beams, hits, rule):
            break
    lengths = beams.done_lengths.tolist()
    return [[beams.done[j, k, :lengths[j][k]].tolist() for k in range(rule.num_beams)] for j in range(prompts)]
