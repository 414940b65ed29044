"""What token-by-token decoding picks (greedy, seeded nucleus sampling), when a row ends, and beam
search from a cached prefix. The decoding loop itself is stream.py's.

Beam search keeps its batch whole: the search (backends/hf/beam.py, a port of generate's) is shared
with the vLLM engine; here it is fed from the forked cache, and its stop is batch-wide, as generate's.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from illusion_checks.backends.hf.beam import beam_rule, search
from illusion_checks.backends.hf.kv import fork, reorder_rows

# (last-position logits of the rows still going, those rows' keys: their places in the caller's output) -> next tokens
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


class NewlineTokens:
    """Remembers which token ids decode to text holding a newline: only such a token can finish
    an answer line, so the full row is decoded only then."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.known: dict[int, bool] = {}

    def __contains__(self, token: int) -> bool:
        if token not in self.known:
            self.known[token] = "\n" in self.tokenizer.decode([token])
        return self.known[token]


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


@torch.no_grad()
def beam_search(model: Any, tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, num_beams: int,
                max_new_tokens: int, stop_at_newline: bool) -> list[list[list[int]]]:
    """Per prompt, `num_beams` beam-search continuations, best first (`beam.search`: what
    `generate(num_beams=n, num_return_sequences=n, do_sample=False)` returns), computed step by step
    on a fork of the prefix `cache` (left-padded rows whose cache holds every token but the last;
    `cache` itself is left as it was). The end-of-sequence ids, `length_penalty` and `early_stopping`
    come from the model's generation config. Applied to the scores: nothing but the log-softmax.
    generate would also apply a generation config's logits processors (repetition penalty,
    no-repeat n-grams, min length, bad words, suppressed or forced tokens...); as in
    `decode_tokens`, none are applied here, so every model gets the same probe."""
    config = model.generation_config
    eos = config.eos_token_id
    eos = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
    rule = beam_rule(config, eos, num_beams, max_new_tokens, stop_at_newline, ids.device)
    cache = fork(cache, None, num_beams, room=max_new_tokens)  # steps write in place; reordering keeps the room
    mask = mask.repeat_interleave(num_beams, 0)
    pos = positions(mask)[:, -1:]
    live = list(range(ids.shape[0]))  # the prompts whose beams the cache holds, in its row order

    def next_log_probs(step: int, rows: torch.Tensor | None, so_far: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        nonlocal mask, pos, live
        step_ids = ids[:, -1:].repeat_interleave(num_beams, 0)
        if rows is not None:  # the cache follows the beams chosen at the last step
            # A prompt that can no longer change its result leaves the batch: its rows get -inf.
            going = [j for j in live if active[j]]
            where = {j: k for k, j in enumerate(live)}
            parents = rows.view(-1, num_beams)
            local = torch.cat([parents[j] - j * num_beams + where[j] * num_beams for j in going])
            reorder_rows(cache, local)
            mask, pos = mask[local], pos[local] + 1
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
            step_ids = so_far.view(-1, num_beams, so_far.shape[-1])[going].reshape(-1, so_far.shape[-1])[:, -1:]
            live = going
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=pos, cache=cache,
                       use_cache=True).logits[:, -1].to(copy=True, dtype=torch.float32)
        log_probs = torch.log_softmax(logits, dim=-1)
        if len(live) == ids.shape[0]:
            return log_probs
        every = log_probs.new_full((ids.shape[0] * num_beams, log_probs.shape[-1]), float("-inf"))
        every.view(ids.shape[0], num_beams, -1)[live] = log_probs.view(len(live), num_beams, -1)
        return every

    return search(tokenizer, ids.shape[0], rule, next_log_probs)
