"""Continuous batching (backends/hf/stream.py): rows that join a running batch decode exactly as
they would alone, on tiny real models, full-attention and sliding-window layers alike."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.backends.base import DecodeSettings
from illusion_checks.backends.hf import kv, stream
from illusion_checks.backends.hf.prefix import greedy, prefill, samples
from illusion_checks.prompts import encode_prompt, ff_prompt
from tests.helpers.generate_oracle import PROMPTS, generate_alone
from tests.helpers.tiny import tiny_lm, tiny_tokenizer

# Ten prompts of many lengths, so a refill always joins rows of another length.
QUEUE = PROMPTS + [ff_prompt(c * k, q) for k, (c, q) in enumerate(
    [("Water boils at 100 degrees. ", "When does water boil?"), ("Ода. ", "Что?"),
     ("The river runs north. ", "Where does it run?"), ("雨。", "什么？"), ("A b c d e f g. ", "Which letter?")], 1)]


@pytest.fixture
def joins(monkeypatch):
    """Counts the joins of a running batch with a refill (a spy: the real join runs)."""
    calls = []

    def spy(first, second, room, keep=None):
        calls.append((first.get_seq_length(), second.get_seq_length()))
        return kv.join(first, second, room, keep)
    monkeypatch.setattr(stream, "join", spy)
    return calls


def _models():
    tokenizer = tiny_tokenizer()
    ids = dict(vocab_size=len(tokenizer), max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    # Gemma 3: a sliding-window layer (8 tokens, shorter than every prompt: a join must keep each
    # row's window) and a full-attention layer.
    sliding = tiny_lm("gemma3", sliding_window=8, query_pre_attn_scalar=16, **ids)
    # (The default init makes the tiny llama repeat one token whatever the prompt; a wider one varies.)
    return {"llama": (tiny_lm("llama", initializer_range=0.2, **ids), tokenizer), "gemma3-sliding": (sliding, tokenizer)}


def _ragged_end(model, rows: list[list[int]], steps: int) -> int:
    """An end-of-sequence id that ends the rows at the most different steps (a random tiny model
    seldom writes a newline), so rows finish apart and refills join rows still running."""
    with torch.no_grad():
        greedy_rows = [model.generate(torch.tensor([ids]), max_new_tokens=steps, do_sample=False,
                                      pad_token_id=0, eos_token_id=None)[0, len(ids):].tolist() for ids in rows]
    first = {}
    for row in greedy_rows:
        for step, token in enumerate(row):
            first.setdefault(token, []).append(step) if step == row.index(token) else None
    return max(first, key=lambda token: (len(set(first[token])), len(first[token])))


@pytest.mark.parametrize("arch", ["llama", "gemma3-sliding"])
def test_rows_joining_a_running_batch_decode_as_generate_does_alone(arch, joins):
    """Guards the continuous batch: a refilled row (its cache left-padded into the batch's, or the
    batch's into its own) gets exactly generate's greedy answer, and refills did join live rows."""
    model, tokenizer = _models()[arch]
    rows = [encode_prompt(tokenizer, p, chat=False) for p in QUEUE]
    model.generation_config.eos_token_id = _ragged_end(model, rows, 12)
    expected = [generate_alone(model, tokenizer, ids, 12) for ids in rows]
    got = greedy(model, tokenizer, rows, DecodeSettings(max_new_tokens=12, batch_size=2))
    assert got == expected
    assert len({len(text) for text in got}) > 2  # the rows did end apart
    assert joins, "no refill joined a running batch: the test did not exercise continuous batching"


def test_samples_do_not_depend_on_the_width_of_the_refilled_batch(joins):
    """Guards seeded sampling under continuous batching: each row's draws follow its own seed,
    whichever rows share its batch, so a narrow refilled batch gives the wide batch's samples."""
    model, tokenizer = _models()["llama"]
    rows = [encode_prompt(tokenizer, p, chat=False) for p in QUEUE[:6]]
    # Near-uniform draws from a random model: one token in eight ends a row, so rows end apart.
    model.generation_config.eos_token_id = list(range(3, len(tokenizer), 8))
    settings = DecodeSettings(max_new_tokens=8, num_samples=4)
    seeds = [11, 12, 13, 14, 15, 16]
    wide = samples(model, tokenizer, prefill(model, rows, tokenizer.pad_token_id), settings, seeds)
    assert not joins
    narrow = samples(model, tokenizer, prefill(model, rows, tokenizer.pad_token_id), settings, seeds, width=8)
    assert joins
    assert narrow == wide
    assert len({tuple(s) for s in wide}) > 1  # the samples are not all one answer


def test_join_left_pads_each_part_and_keeps_the_sliding_window(tiny_models):
    """Guards `kv.join` itself on a real cache: each part's states end at the common length with
    zeros before them, full layers gain room, a sliding layer holds at most its window."""
    model, tokenizer = tiny_models["llama"]
    short = prefill(model, [encode_prompt(tokenizer, QUEUE[4], chat=False)], tokenizer.pad_token_id).cache
    long = prefill(model, [encode_prompt(tokenizer, QUEUE[0], chat=False)], tokenizer.pad_token_id).cache
    a, b = short.get_seq_length(), long.get_seq_length()
    joined = kv.join(short, long, room=5)
    layer = joined.layers[0]
    assert layer.keys.shape[0] == 2 and layer.keys.shape[-2] == b and layer.key_room.shape[-2] == b + 5
    assert torch.equal(layer.keys[0, :, b - a:], short.layers[0].keys[0])
    assert torch.count_nonzero(layer.keys[0, :, :b - a]) == 0
    assert torch.equal(layer.values[1], long.layers[0].values[0])
    both = kv.join(short, long, room=0)
    dropped = kv.join(both, short, room=0, keep=torch.tensor([1])).layers[0]  # the first's row 0 finished: dropped
    assert dropped.keys.shape[0] == 2 and torch.equal(dropped.keys[0], long.layers[0].keys[0])
    reverse = kv.join(long, short, room=0).layers[0]  # the running batch the longer: the new rows padded
    assert torch.equal(reverse.keys[1, :, b - a:], short.layers[0].keys[0])
    assert torch.count_nonzero(reverse.keys[1, :, :b - a]) == 0 and torch.equal(reverse.keys[0], long.layers[0].keys[0])


def test_a_sliding_layer_joined_holds_the_last_window_of_each_row():
    """Guards `kv.join` on a sliding-window layer: after the join it holds window - 1 states per row,
    each row's latest, and counts the common length as seen."""
    model, tokenizer = _models()["gemma3-sliding"]
    caches = [prefill(model, [encode_prompt(tokenizer, QUEUE[k], chat=False)], tokenizer.pad_token_id).cache
              for k in (0, 4)]
    joined = kv.join(*caches, room=3)
    sliding = [k for k, layer in enumerate(joined.layers) if layer.is_sliding]
    assert sliding
    for k in sliding:
        layer = joined.layers[k]
        assert layer.keys.shape[-2] == 7 and layer.cumulative_length == max(c.get_seq_length() for c in caches)
        for row, cache in enumerate(caches):
            assert torch.equal(layer.keys[row, :, -cache.layers[k].keys.shape[-2]:], cache.layers[k].keys[0])
