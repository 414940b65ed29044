"""The token-by-token decoder, with continuous batching: one decoding batch kept full from a queue of rows.

transformers' `generate` keeps every row of a batch until the slowest one ends, so one row that
runs to `max_new_tokens` makes all its neighbours pay for 32 steps. Here a row leaves the batch
(and its KV cache) the step it finishes; and once half the batch has left, the rows that wait take their place:
the queue hands over a prefilled chunk (new prompts, or forks of a prompt's cache for its samples),
whose cache is joined to the running one (`kv.join`: each part left-padded to the longer, the
masks padded alike, so no row sees another's tokens or a pad). Each row decodes exactly as it would
alone: its positions and its own attention mask are kept, its picker is called with its own key
(the seeded sampler's generator), and it ends by one rule (`decode_stream`). A model's generation-config extras
(repetition penalty and the like) are not applied: `pick` sees raw logits, so every model gets
the same probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from illusion_checks.backends.base import answer_line_done, answers
from illusion_checks.backends.hf.decode import NewlineTokens, Picker, eos_token_ids, positions
from illusion_checks.backends.hf.kv import join, joinable, keep_rows, make_room


@dataclass
class Chunk:
    """Left-padded rows whose cache holds every token but the last, and the key of each row
    (its place in the caller's output, and the key its picker sees)."""

    ids: torch.Tensor
    mask: torch.Tensor
    cache: Any
    keys: list[int]


# free slots -> a chunk of at most that many rows, or None when the queue is empty
Refill = Callable[[int], "Chunk | None"]


@dataclass
class _Batch:
    step_ids: torch.Tensor  # [rows, 1] each row's next input token
    mask: torch.Tensor  # [rows, cached + 1]
    pos: torch.Tensor  # [rows, 1]
    cache: Any  # holds mask.shape[1] - 1 positions
    keys: list[int | None]  # None: a finished row not yet dropped

    @classmethod
    def of(cls, chunk: Chunk, room: int) -> "_Batch":
        make_room(chunk.cache, room)
        return cls(chunk.ids[:, -1:], chunk.mask, positions(chunk.mask)[:, -1:], chunk.cache, list(chunk.keys))

    @property
    def live(self) -> list[int]:
        return [j for j, key in enumerate(self.keys) if key is not None]

    def step(self, chosen: torch.Tensor, finished: list[int]) -> None:
        """Feed each row its chosen token next; `finished` rows end. Dropping rows copies the
        whole cache, so finished rows stay (computed, never read) until a quarter of the batch has
        finished, or a refill joins (`join` drops them in its own copy)."""
        for j in finished:
            self.keys[j] = None
        if len(self.keys) - len(self.live) >= max(1, len(self.keys) // 4):
            live = self.live
            index = torch.tensor(live, device=self.mask.device)
            keep_rows(self.cache, index)
            self.mask, self.pos, chosen = self.mask[index], self.pos[index], chosen[index]
            self.keys = [self.keys[j] for j in live]
        self.step_ids = chosen[:, None]
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.keys), 1)], 1)
        self.pos = self.pos + 1

    def join(self, chunk: Chunk, room: int) -> None:
        """Add the chunk's rows after this batch's live ones."""
        live = self.live
        keep = None if len(live) == len(self.keys) else torch.tensor(live, device=self.mask.device)
        mask, pos, step_ids = ((t if keep is None else t[keep]) for t in (self.mask, self.pos, self.step_ids))
        length = max(mask.shape[1], chunk.mask.shape[1])
        self.cache = join(self.cache, chunk.cache, room, keep)
        self.mask = torch.cat([_pad(mask, length), _pad(chunk.mask, length)])
        self.step_ids = torch.cat([step_ids, chunk.ids[:, -1:]])
        self.pos = torch.cat([pos, positions(chunk.mask)[:, -1:]])
        self.keys = [self.keys[j] for j in live] + list(chunk.keys)


def _pad(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([mask.new_zeros(mask.shape[0], width - mask.shape[1]), mask], 1)


@torch.no_grad()
def decode_stream(model: Any, tokenizer: Any, refill: Refill, width: int, pick: Picker, max_new_tokens: int,
                  stop_at_newline: bool, finished: Callable[[int], None] | None = None) -> dict[int, list[int]]:
    """Each queued row's new token ids, by key, decoded in a batch of at most `width` rows that
    takes new rows from `refill` whenever half of it has finished (a row ends at an
    end-of-sequence id, kept as its last; after `max_new_tokens`; once it has produced a complete
    answer line, when `stop_at_newline`). `finished(key)` hears each row end. A cache `kv.join` cannot merge (other
    layer kinds) is refilled only once its batch has emptied."""
    eos, newline = eos_token_ids(model, tokenizer), NewlineTokens(tokenizer)
    produced: dict[int, list[int]] = {}
    chunk = refill(width)
    batch = _Batch.of(chunk, max_new_tokens) if chunk else None
    while batch is not None:
        logits = model(input_ids=batch.step_ids, attention_mask=batch.mask, position_ids=batch.pos,
                       cache=batch.cache, use_cache=True).logits[:, -1]
        live = batch.live
        keys = [batch.keys[j] for j in live]
        picked = pick(logits if len(live) == len(batch.keys) else logits[live], keys)
        chosen = torch.zeros(len(batch.keys), dtype=torch.long, device=logits.device)
        chosen[live] = picked
        ended = []
        for j, key, token in zip(live, keys, picked.tolist()):
            row = produced.setdefault(key, [])
            row.append(token)
            if len(row) == max_new_tokens or token in eos or (
                    stop_at_newline and token in newline and answer_line_done(tokenizer.decode(row, skip_special_tokens=True))):
                ended.append(j)
                if finished:
                    finished(key)
        going = len(live) - len(ended)
        if going:
            batch.step(chosen, ended)
        free = width - going
        if going and (free < width - width // 2 or not joinable(batch.cache)):
            continue
        chunk = refill(free)
        if chunk is None:
            batch = batch if going else None
        elif going:
            batch.join(chunk, max_new_tokens)
        else:
            batch = _Batch.of(chunk, max_new_tokens)
    return produced


def decode_tokens(model: Any, tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, pick: Picker,
                  max_new_tokens: int, stop_at_newline: bool) -> list[list[int]]:
    """Continue left-padded rows whose KV cache holds every token but the last (the cache is
    consumed; `pick` is called with the rows' indices); each row's new token ids, as
    `decode_stream` decodes them with nothing queued behind them."""
    pending = [Chunk(ids, mask, cache, list(range(ids.shape[0])))]
    out = decode_stream(model, tokenizer, lambda free: pending.pop() if pending else None, ids.shape[0], pick,
                        max_new_tokens, stop_at_newline)
    return [out[row] for row in range(ids.shape[0])]


def decode(model: Any, tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, pick: Picker,
           max_new_tokens: int, stop_at_newline: bool) -> list[str]:
    """The answers of `decode_tokens`, as text."""
    produced = decode_tokens(model, tokenizer, ids, mask, cache, pick, max_new_tokens, stop_at_newline)
    return answers(tokenizer, produced, stop_at_newline)
