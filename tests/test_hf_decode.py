"""The token-by-token decoder against transformers' generate, on tiny real models."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.backends.hf.decode import SeededNucleus, pick_greedy
from illusion_checks.backends.hf.kv import make_room
from illusion_checks.backends.hf.stream import decode
from illusion_checks.backends.hf.prefix import prefill
from illusion_checks.prompts import encode_prompt
from tests.helpers.generate_oracle import PROMPTS, generate_alone

@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_greedy_decode_of_a_ragged_batch_equals_generate_per_prompt(tiny_models, arch):
    model, tokenizer = tiny_models[arch]
    rows = [encode_prompt(tokenizer, p, chat=False) for p in PROMPTS]
    # Make the first prompt's second greedy token the end-of-sequence token, so one row leaves the
    # batch early while the others go on: the survivors must be unaffected.
    with torch.no_grad():
        first = model.generate(torch.tensor([rows[0]]), max_new_tokens=2, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)[0, -1].item()
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = first
    try:
        expected = [generate_alone(model, tokenizer, ids, 10) for ids in rows]
        prefix = prefill(model, rows, tokenizer.pad_token_id)
        got = decode(model, tokenizer, prefix.ids, prefix.mask, prefix.cache, pick_greedy, 10, True)
    finally:
        model.generation_config.eos_token_id = saved
    assert got == expected
    assert len(tokenizer(got[0], add_special_tokens=False)["input_ids"]) <= 2  # it did stop early


def test_decode_leaves_the_prefix_cache_usable_when_forked(tiny_models):
    model, tokenizer = tiny_models["llama"]
    rows = [encode_prompt(tokenizer, p, chat=False) for p in PROMPTS]
    prefix = prefill(model, rows, tokenizer.pad_token_id)
    first = decode(model, tokenizer, prefix.ids, prefix.mask, prefix.rows(range(len(rows))).cache, pick_greedy, 6, True)
    again = decode(model, tokenizer, prefix.ids, prefix.mask, prefix.rows(range(len(rows))).cache, pick_greedy, 6, True)
    assert first == again


def test_sampled_rows_keep_their_own_generators_as_rows_leave():
    sampler = SeededNucleus(0.9, [11, 12, 13])
    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 2
    both = sampler(logits[[0, 2]], [0, 2])  # row 1 already left the batch
    alone = SeededNucleus(0.9, [11, 12, 13])(logits[2:3], [2])
    assert int(both[1]) == int(alone[0])


def test_a_cache_given_too_little_room_grows_and_decodes_the_same(tiny_models):
    model, tokenizer = tiny_models["llama"]
    rows = [encode_prompt(tokenizer, p, chat=False) for p in PROMPTS]
    prefix = prefill(model, rows, tokenizer.pad_token_id)
    expected = decode(model, tokenizer, prefix.ids, prefix.mask, prefix.rows(range(len(rows))).cache, pick_greedy, 6, False)
    cramped = prefix.rows(range(len(rows))).cache
    make_room(cramped, 1)  # room for one token; decode keeps layers that already have room
    assert decode(model, tokenizer, prefix.ids, prefix.mask, cramped, pick_greedy, 6, False) == expected
