"""Beam search on the forked prefix cache (`decode.beam_search`) against transformers' generate.

The oracle is the code `prefix.beam` ran before the port: `generate(num_beams=n,
num_return_sequences=n)` on a repeated fork of the prefix cache, stopped by the answer-line rule.
Outputs must be identical, token for token and text for text."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import torch
from transformers import StoppingCriteriaList

from illusion_checks.backends.base import DecodeSettings, answer_text
from illusion_checks.backends.base import answers
from illusion_checks.backends.hf.decode import beam_search
from illusion_checks.backends.hf.kv import make_room
from illusion_checks.backends.hf.prefix import Prefix, batches, beam, ff_probes, prefill
from illusion_checks.probing import ProbeSettings, item_prompts, prepare_items
from illusion_checks.prompts import encode_continuations, encode_prompt
from tests.helpers.generate_oracle import PROMPTS, AnswerLineStop



@torch.no_grad()
def generate_beams(model, tokenizer, prefix: Prefix, settings: DecodeSettings) -> torch.Tensor:
    """The old `_beam` + `_generate`, up to the new tokens: one row per beam, prompts in order."""
    n = settings.num_beams
    expanded = prefix.rows(range(prefix.ids.shape[0]), repeat=n)
    make_room(expanded.cache, settings.max_new_tokens)
    width = prefix.ids.shape[1]
    stopping = StoppingCriteriaList([AnswerLineStop(tokenizer, width)]) if settings.stop_at_newline else None
    out = model.generate(
        input_ids=prefix.ids, attention_mask=prefix.mask, cache=expanded.cache,
        max_new_tokens=settings.max_new_tokens, stopping_criteria=stopping, pad_token_id=tokenizer.pad_token_id,
        do_sample=False, num_beams=n, num_return_sequences=n, top_p=None, top_k=None, temperature=None,
    )
    return out[:, width:]


def old_beam_texts(tokenizer, generated: torch.Tensor, settings: DecodeSettings) -> list[list[str]]:
    """The old `_beam`'s answers, from `generate_beams`' tokens."""
    n = settings.num_beams
    texts = [answer_text(t, settings.stop_at_newline) for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    return [texts[j * n:(j + 1) * n] for j in range(len(texts) // n)]


def _fill(model, tokenizer) -> int:
    """What generate pads shorter beams with: the pad id, or (when that is 0) the first end id."""
    eos = model.generation_config.eos_token_id
    return tokenizer.pad_token_id or (eos[0] if isinstance(eos, list) else eos)


def assert_same_as_generate(model, tokenizer, prefix: Prefix, settings: DecodeSettings, texts: bool = True) -> list:
    """beam_search's tokens are generate's up to each beam's end (generate pads the rest), and their
    answers the old `_beam`'s. Returns the beams' lengths."""
    expected = generate_beams(model, tokenizer, prefix, settings)
    got = beam_search(model, tokenizer, prefix.ids, prefix.mask, prefix.cache, settings.num_beams,
                      settings.max_new_tokens, settings.stop_at_newline)
    flat = [beam for beams in got for beam in beams]
    assert len(flat) == expected.shape[0] and all(len(beams) == settings.num_beams for beams in got)
    assert max(len(beam) for beam in flat) == expected.shape[1]
    fill = _fill(model, tokenizer)
    for row, beam in zip(expected.tolist(), flat):
        assert row == beam + [fill] * (len(row) - len(beam))
    if texts:  # the answers `_beam` makes of these tokens
        answered = [answers(tokenizer, beams, settings.stop_at_newline) for beams in got]
        assert answered == old_beam_texts(tokenizer, expected, settings)
    return [len(beam) for beam in flat]


def _prefix(model, tokenizer, prompts=PROMPTS) -> Prefix:
    return prefill(model, [encode_prompt(tokenizer, p, chat=False) for p in prompts], tokenizer.pad_token_id)


@pytest.mark.parametrize("stop", [True, False])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_beam_search_equals_generate_on_a_ragged_batch(tiny_models, arch, stop):
    model, tokenizer = tiny_models[arch]
    settings = DecodeSettings(max_new_tokens=8, num_beams=5, stop_at_newline=stop)
    prefix = _prefix(model, tokenizer)
    assert_same_as_generate(model, tokenizer, prefix, settings)
    expected = old_beam_texts(tokenizer, generate_beams(model, tokenizer, prefix, settings), settings)
    assert beam(model, tokenizer, prefix, settings) == expected


def _frequent_tokens(model, tokenizer, prefix: Prefix, count: int) -> list[int]:
    """The tokens the beams produce most after their first step: as end ids, they end beams early
    and at different lengths, so length normalisation and the done heuristic decide the order."""
    beams = beam_search(model, tokenizer, prefix.ids, prefix.mask, prefix.cache, 5, 12, False)
    tally = collections.Counter(t for per_prompt in beams for beam in per_prompt for t in beam[1:])
    return [token for token, _ in tally.most_common(count)]


def _with_end_ids(model, tokenizer, prefix: Prefix, max_new_tokens: int) -> list[int]:
    """Beam search against generate with the model's end id replaced by frequent tokens (one, two,
    and two after the real one), 2 and 5 beams, with and without the answer-line stop."""
    frequent = _frequent_tokens(model, tokenizer, prefix, 3)
    saved = model.generation_config.eos_token_id
    lengths = []
    try:
        for eos, texts in (([frequent[0]], False), (frequent[1:3], False), ([saved, *frequent[:2]], True)):
            # A frequent end id is an ordinary token, so generate's padding (the first end id)
            # shows in its text: compare tokens then; with the real end id first, texts too.
            model.generation_config.eos_token_id = eos
            for beams, stop in ((2, True), (2, False), (5, True), (5, False)):
                settings = DecodeSettings(max_new_tokens=max_new_tokens, num_beams=beams, stop_at_newline=stop)
                lengths += assert_same_as_generate(model, tokenizer, prefix, settings, texts)
    finally:
        model.generation_config.eos_token_id = saved
    return lengths


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_beams_ending_early_at_several_end_ids_equal_generate(tiny_models, arch):
    model, tokenizer = tiny_models[arch]
    lengths = _with_end_ids(model, tokenizer, _prefix(model, tokenizer), 10)
    assert min(lengths) < 10, "no beam ended early: the test would not exercise finished hypotheses"


def test_beam_search_equals_generate_on_a_model_that_answers(taught_model):
    """The taught model writes an answer line, so beams end by the answer-line rule at their own
    lengths, prompts are done at different steps, and length normalisation and the done heuristic
    decide which hypotheses are returned, in which order."""
    model, tokenizer = taught_model.model, taught_model.tokenizer
    rows = [item_prompts(tokenizer, p, ProbeSettings(items_per_language=6)).ff.prompt_ids for p in taught_model.prepared]
    prefix = prefill(model, rows, tokenizer.pad_token_id)
    lengths = []
    for stop, beams, steps in ((True, 5, 12), (False, 5, 12), (True, 2, 16), (False, 2, 16), (True, 3, 16)):
        settings = DecodeSettings(max_new_tokens=steps, num_beams=beams, stop_at_newline=stop)
        lengths += assert_same_as_generate(model, tokenizer, prefix, settings)
    assert len(set(lengths)) > 2, "beams should end at several lengths"
    lengths = _with_end_ids(model, tokenizer, prefix, 16)
    assert len(set(lengths)) > 2


def test_beam_search_leaves_the_prefix_cache_as_it_was(tiny_models):
    model, tokenizer = tiny_models["gemma3"]  # sliding-window layers
    prefix = _prefix(model, tokenizer)
    settings = DecodeSettings(max_new_tokens=6, num_beams=4)
    first = beam(model, tokenizer, prefix, settings)
    assert beam(model, tokenizer, prefix, settings) == first
    assert beam(model, tokenizer, prefix.rows([3, 1]), settings) == [first[3], first[1]]


def test_ff_probes_beams_equal_generate_per_call(tiny_models):
    """Through `ff_probes`: `decode_rows // num_beams` prompts per beam call, as before."""
    model, tokenizer = tiny_models["llama"]
    prompts = PROMPTS * 2
    encoded = [encode_continuations(tokenizer, p, encode_prompt(tokenizer, p, chat=False), ["a", "b", "c", "d"], chat=False)
               for p in prompts]
    settings = DecodeSettings(max_new_tokens=6, num_beams=3, num_samples=1, batch_size=2)  # 8 rows: 2 prompts a call
    n = len(encoded)
    probes = ff_probes(model, tokenizer, encoded, [("x",)] * n, settings, [0] * n, [True] * n)
    order = sorted(range(n), key=lambda i: (len(encoded[i].prompt_ids), i))
    for batch in batches(order, settings.batch_size):
        prefix = prefill(model, [encoded[i].prompt_ids for i in batch], tokenizer.pad_token_id)
        for part in batches(list(range(len(batch))), settings.decode_rows // settings.num_beams):
            expected = old_beam_texts(tokenizer, generate_beams(model, tokenizer, prefix.rows(part), settings), settings)
            assert [probes[batch[j]].beam for j in part] == expected


@pytest.mark.slow
def test_beam_search_equals_generate_on_smollm2(embedded_model):
    """The real embedded model over 12 English fixture items' FF prompts, batched as `ff_probes`
    batches them (12 prompts a beam call), with and without the answer-line stop."""
    from illusion_checks.datasets import load_dataset

    loaded = embedded_model("smollm2-135m")
    model, tokenizer = loaded.model, loaded.tokenizer
    probe = ProbeSettings(items_per_language=12)
    prepared = prepare_items(load_dataset("fixtures"), ["en"], probe)
    rows = sorted((item_prompts(tokenizer, p, probe).ff.prompt_ids for p in prepared), key=len)
    # The probe's own settings, then (to keep the test short) 16 new tokens without the line stop.
    for settings in (probe.decode, dataclasses.replace(probe.decode, max_new_tokens=16, stop_at_newline=False)):
        for batch in batches(rows, settings.batch_size):
            prefix = prefill(model, batch, tokenizer.pad_token_id)
            for part in batches(list(range(len(batch))), settings.decode_rows // settings.num_beams):
                assert_same_as_generate(model, tokenizer, prefix.rows(part), settings)
