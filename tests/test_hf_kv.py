"""Forks and roomy layers of a real prefix cache: a fork never changes its source, room changes no value."""

from __future__ import annotations

import torch

from illusion_checks.backends.hf.kv import fork, keep_rows, make_room
from illusion_checks.backends.hf.prefix import prefill
from illusion_checks.prompts import encode_prompt
from illusion_checks.prompts import ff_prompt

PROMPTS = [ff_prompt("The Eiffel Tower was finished in 1889.", "When?"), ff_prompt("Short.", "Q?")]


def _prefix(tiny_models):
    model, tokenizer = tiny_models["llama"]
    return model, prefill(model, [encode_prompt(tokenizer, p, chat=False) for p in PROMPTS], tokenizer.pad_token_id)


def _states(cache) -> list[torch.Tensor]:
    return [t.clone() for layer in cache.layers for t in (layer.keys, layer.values)]


def _grow(model, cache, rows: int, token: int) -> None:
    """One more token per row, written into `cache`."""
    ids = torch.full((rows, 1), token, dtype=torch.long)
    length = cache.get_seq_length()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones(rows, length + 1, dtype=torch.long),
              position_ids=torch.full((rows, 1), length), cache=cache, use_cache=True)


def test_a_roomy_cache_and_its_fork_grow_apart(tiny_models):
    model, prefix = _prefix(tiny_models)
    roomy = fork(prefix.cache)
    make_room(roomy, 4)  # writes in place: a fork must copy its buffers, not share them
    twin = fork(roomy)
    _grow(model, roomy, len(PROMPTS), token=5)
    grown = _states(roomy)
    _grow(model, twin, len(PROMPTS), token=6)  # the same slot of its own buffers
    assert all(torch.equal(a, b) for a, b in zip(grown, _states(roomy)))
    assert not all(torch.equal(a, b) for a, b in zip(grown, _states(twin)))


def test_roomy_layers_select_and_repeat_rows_as_dynamic_layers_do(tiny_models):
    _, prefix = _prefix(tiny_models)
    plain, roomy = fork(prefix.cache), fork(prefix.cache)
    make_room(roomy, 2)
    for cache in (plain, roomy):
        cache.batch_repeat_interleave(3)
        keep_rows(cache, torch.tensor([5, 0, 2]))
    assert all(torch.equal(a, b) for a, b in zip(_states(plain), _states(roomy)))


def test_a_roomy_fork_holds_the_rows_a_plain_fork_holds_in_one_copy(tiny_models):
    """Guards `fork(..., room=)`: selecting, repeating and making room at once gives the plain
    fork's states, with the room, and leaves the source as it was."""
    _, prefix = _prefix(tiny_models)
    before = _states(prefix.cache)
    rows = torch.tensor([1, 0])
    plain = fork(prefix.cache, rows, 3)
    roomy = fork(prefix.cache, rows, 3, room=4)
    assert all(torch.equal(a, b) for a, b in zip(_states(plain), _states(roomy)))
    assert all(layer.key_room.shape[-2] == layer.keys.shape[-2] + 4 for layer in roomy.layers)
    assert all(torch.equal(a, b) for a, b in zip(before, _states(prefix.cache)))
