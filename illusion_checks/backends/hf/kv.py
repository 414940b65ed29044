"""What the probes do to a transformers KV cache: fork it, keep or repeat rows, give it room to grow in place.

This is the one module that looks inside a cache (its `layers` and their classes); everything else
hands the cache to the model as `cache=` and reads it back from `out.cache`. Checked against
transformers 5.24 (pyproject asks for >=5.24,<6; tests/test_transformers_api.py fails on any
deprecation the probes trigger).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers.cache_utils import DummyLayer, DynamicIndexedLayer, DynamicLayer, DynamicSlidingWindowLayer

# Layers that rebind their tensors on every change (cat, index, repeat) instead of writing in place:
# a fork may share their tensors until one side changes. Any other layer (linear-attention states
# are updated with `copy_`, roomy layers write into their buffers) is copied whole.
_REBINDING = (DynamicLayer, DynamicSlidingWindowLayer, DynamicIndexedLayer, DummyLayer)


def fork(cache: Any, rows: torch.Tensor | None = None, repeat: int = 1) -> Any:
    """A cache holding `rows` (all when None), each repeated `repeat` times, that can grow or be
    re-indexed without touching `cache`; copies no tensor of a dynamic layer until it changes."""
    if isinstance(getattr(cache, "layers", None), list):
        twin = copy.copy(cache)
        twin.layers = [copy.copy(layer) if type(layer) in _REBINDING else copy.deepcopy(layer)
                       for layer in cache.layers]
    else:  # a cache without layer objects (remote-code models): copied whole
        twin = copy.deepcopy(cache)
    if rows is not None:
        twin.batch_select_indices(rows)
    if repeat > 1:
        twin.batch_repeat_interleave(repeat)
    return twin


def keep_rows(cache: Any, rows: torch.Tensor) -> None:
    """Drop every row of `cache` but `rows`, in place (finished rows leaving a decoding batch)."""
    cache.batch_select_indices(rows)


def reorder_rows(cache: Any, rows: torch.Tensor) -> None:
    """Row i of `cache` becomes its row `rows[i]`, in place (beam search moving each beam's cache
    to the beams that continue it), through the cache's own `reorder_cache`, as generate does."""
    cache.reorder_cache(rows)


def make_room(cache: Any, room: int) -> None:
    """Give each full-attention layer of a (forked) cache room for `room` decoded tokens, so each
    step writes its keys and values in place; sliding-window layers, which drop old tokens, and
    layers that already have room keep their own update.

    transformers offers no in-place growing dynamic layer (a StaticCache attends over its whole
    length and cannot drop rows), so this swaps in a `DynamicLayer` subclass: it relies on that
    class's `keys`/`values`/`update`/`reorder_cache`/`batch_*` contract as of transformers 5.24."""
    if isinstance(getattr(cache, "layers", None), list):
        cache.layers = [_RoomyLayer(layer, room) if type(layer) is DynamicLayer and layer.is_initialized else layer
                        for layer in cache.layers]


def _buffer(states: torch.Tensor, capacity: int) -> torch.Tensor:
    """A [rows, heads, capacity, dim] buffer that starts with `states`."""
    buffer = states.new_empty(*states.shape[:2], capacity, states.shape[-1])
    buffer[:, :, :states.shape[-2]] = states
    return buffer


class _RoomyLayer(DynamicLayer):
    """A full-attention cache layer with room for `room` more tokens: each decoding step writes its
    keys and values in place, where the dynamic layer concatenates (copying the whole cache every
    step, which cost more than the attention itself on a CPU). `keys`/`values` are views of the
    filled part, so every reader of a dynamic layer sees what it expects."""

    def __init__(self, layer: DynamicLayer, room: int) -> None:
        super().__init__()
        self.dtype, self.device, self.is_initialized = layer.keys.dtype, layer.keys.device, True
        length = layer.keys.shape[-2]
        self.key_room, self.value_room = _buffer(layer.keys, length + room), _buffer(layer.values, length + room)
        self._show(length)

    def _show(self, length: int) -> None:
        self.keys, self.values = self.key_room[:, :, :length], self.value_room[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.keys.shape[-2], self.keys.shape[-2] + key_states.shape[-2]
        if end > self.key_room.shape[-2]:  # more tokens than planned for: double the room
            self.key_room, self.value_room = _buffer(self.keys, 2 * end), _buffer(self.values, 2 * end)
        self.key_room[:, :, start:end] = key_states
        self.value_room[:, :, start:end] = value_states
        self._show(end)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        length = self.keys.shape[-2]
        self.key_room, self.value_room = self.key_room[indices], self.value_room[indices]
        self._show(length)

    def batch_repeat_interleave(self, repeats: int) -> None:
        rows = torch.arange(self.key_room.shape[0], device=self.key_room.device)
        self.batch_select_indices(rows.repeat_interleave(repeats))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search's per-step reordering, kept on the roomy buffers."""
        self.batch_select_indices(beam_idx.to(self.key_room.device))
