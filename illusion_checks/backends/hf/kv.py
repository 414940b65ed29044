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


def fork(cache: Any, rows: torch.Tensor | None = None, repeat: int = 1, room: int | None = None) -> Any:
    """A cache holding `rows` (all when None), each repeated `repeat` times, that can grow or be
    re-indexed without touching `cache`; copies no tensor of a dynamic layer until it changes.
    With `room`, its full-attention layers come roomy (`make_room`), built by the one copy that
    selects and repeats their rows."""
    if not isinstance(getattr(cache, "layers", None), list):  # no layer objects (remote-code models): copied whole
        twin = copy.deepcopy(cache)
        if rows is not None:
            twin.batch_select_indices(rows)
        if repeat > 1:
            twin.batch_repeat_interleave(repeat)
        return twin
    twin = copy.copy(cache)
    twin.layers = [_forked(layer, rows, repeat, room) for layer in cache.layers]
    return twin


def _forked(layer: Any, rows: torch.Tensor | None, repeat: int, room: int | None) -> Any:
    if room is not None and type(layer) is DynamicLayer and layer.is_initialized:
        return _RoomyLayer.of(layer, rows, repeat, room)
    twin = copy.copy(layer) if type(layer) in _REBINDING else copy.deepcopy(layer)
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


def _repeated(states: torch.Tensor, repeat: int, capacity: int) -> torch.Tensor:
    """A [rows * repeat, heads, capacity, dim] buffer starting with each row of `states` `repeat` times."""
    rows, heads, length, dim = states.shape
    buffer = states.new_empty(rows * repeat, heads, capacity, dim)
    buffer.view(rows, repeat, heads, capacity, dim)[:, :, :, :length] = states[:, None]
    return buffer


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
        self._hold(_buffer(layer.keys, layer.keys.shape[-2] + room), _buffer(layer.values, layer.values.shape[-2] + room),
                   layer.keys.shape[-2])

    @classmethod
    def of(cls, layer: DynamicLayer, rows: torch.Tensor | None, repeat: int, room: int) -> "_RoomyLayer":
        """`layer`'s `rows` (all when None), each repeated `repeat` times, with room for `room` more tokens."""
        length = layer.keys.shape[-2]
        roomy = cls.__new__(cls)
        DynamicLayer.__init__(roomy)
        roomy._hold(*(_repeated(states if rows is None else states.index_select(0, rows), repeat, length + room)
                      for states in (layer.keys, layer.values)), length)
        return roomy

    def _hold(self, key_room: torch.Tensor, value_room: torch.Tensor, length: int) -> None:
        self.dtype, self.device, self.is_initialized = key_room.dtype, key_room.device, True
        self.key_room, self.value_room = key_room, value_room
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


def joinable(cache: Any) -> bool:
    """Whether `join` can merge this cache with another: full-attention and sliding-window layers only."""
    layers = getattr(cache, "layers", None)
    return isinstance(layers, list) and all(
        type(layer) in (DynamicLayer, _RoomyLayer, DynamicSlidingWindowLayer) and layer.is_initialized
        for layer in layers)


def join(first: Any, second: Any, room: int, keep: torch.Tensor | None = None) -> Any:
    """One cache holding `first`'s rows (only `keep`, when given) then `second`'s (continuous
    batching: rows joining a decoding batch), each left-padded with zeros to the longer one's
    length, full-attention layers with room for `room` more tokens; both inputs are left as they
    were. The caller pads the attention masks the same way, so a padded position is never attended."""
    length = max(first.get_seq_length(), second.get_seq_length())
    twin = copy.copy(first)
    twin.layers = [_join_layer(a, b, length, room, keep) for a, b in zip(first.layers, second.layers)]
    return twin


def _join_layer(a: Any, b: Any, length: int, room: int, keep: torch.Tensor | None) -> Any:
    def kept(states: torch.Tensor) -> torch.Tensor:
        return states if keep is None else states.index_select(0, keep)

    if isinstance(a, DynamicSlidingWindowLayer):
        held = min(length, a.sliding_window - 1)  # what the layer holds after `length` tokens
        layer = copy.copy(a)
        layer.keys, layer.values = (_stack(kept(x), y, held, held) for x, y in ((a.keys, b.keys), (a.values, b.values)))
        layer.cumulative_length = length
        return layer
    layer = _RoomyLayer.__new__(_RoomyLayer)
    DynamicLayer.__init__(layer)
    layer._hold(_stack(kept(a.keys), b.keys, length, length + room), _stack(kept(a.values), b.values, length, length + room),
                length)
    return layer


def _stack(a: torch.Tensor, b: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    """[rows_a + rows_b, heads, capacity, dim]: each part's last states end at `length`, zeros before them."""
    out = a.new_empty(a.shape[0] + b.shape[0], a.shape[1], capacity, a.shape[-1])
    for start, part in ((0, a), (a.shape[0], b)):
        rows, have = part.shape[0], min(part.shape[-2], length)
        out[start:start + rows, :, :length - have] = 0
        out[start:start + rows, :, length - have:length] = part[:, :, part.shape[-2] - have:]
    return out
