"""The one beam search (backends/hf/beam.py) fed as the vLLM backend feeds it: per step, each
distinct running beam's top `keep` next-token log-probabilities from one plain forward over the
whole sequence (no cache, no padding), -inf elsewhere, and nothing at all for a prompt that can no
longer change its result. It must return the HF backend's beams
(dense log-softmax on the forked prefix cache, itself checked against generate in test_hf_beam.py),
token for token: the top `keep` of each beam are all the search can ever pick."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.backends.hf.beam import beam_rule, search
from illusion_checks.backends.hf.decode import beam_search
from illusion_checks.backends.hf.prefix import prefill
from illusion_checks.probing import ProbeSettings, item_prompts
from illusion_checks.prompts import encode_prompt
from tests.helpers.generate_oracle import PROMPTS


def top_k_only(model, prompts: list[list[int]], keep: int, calls: list[int]):
    """A step function as the vLLM backend's: distinct sequences only, top `keep` each, -inf elsewhere."""

    @torch.no_grad()
    def step(index: int, rows, so_far: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        n = so_far.shape[0] // len(prompts)
        sequences = {row: prompts[row // n] + tokens for row, tokens in enumerate(so_far.tolist()) if active[row // n]}
        distinct = list(dict.fromkeys(map(tuple, sequences.values())))
        calls.append(len(distinct))
        tops = {}
        for sequence in distinct:
            logits = model(torch.tensor([sequence])).logits[0, -1].float()
            values, ids = torch.topk(torch.log_softmax(logits, -1), keep)
            tops[sequence] = (ids, values)
        dense = torch.full((so_far.shape[0], model.config.vocab_size), float("-inf"))
        for row, sequence in sequences.items():
            ids, values = tops[tuple(sequence)]
            dense[row, ids] = values
        return dense
    return step


def _same_beams(model, tokenizer, rows: list[list[int]], beams: int, steps: int, stop: bool) -> list[int]:
    prefix = prefill(model, rows, tokenizer.pad_token_id)
    expected = beam_search(model, tokenizer, prefix.ids, prefix.mask, prefix.cache, beams, steps, stop)
    config = model.generation_config
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    rule = beam_rule(config, eos, beams, steps, stop, torch.device("cpu"))
    calls: list[int] = []
    assert search(tokenizer, len(rows), rule, top_k_only(model, rows, rule.keep, calls)) == expected
    return calls


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_top_k_fed_search_equals_the_hf_beams_on_a_ragged_batch(tiny_models, arch):
    model, tokenizer = tiny_models[arch]
    rows = [encode_prompt(tokenizer, p, chat=False) for p in PROMPTS]
    for beams, stop in ((5, True), (5, False), (2, True)):
        calls = _same_beams(model, tokenizer, rows, beams, 8, stop)
        assert calls[0] == len(rows)  # the first step asks once per prompt, not once per beam


def test_top_k_fed_search_equals_the_hf_beams_where_answers_end_at_the_line(taught_model):
    """The taught model writes answer lines: beams end at their own lengths, so the finished
    hypotheses, length normalisation and the done heuristic decide the result."""
    model, tokenizer = taught_model.model, taught_model.tokenizer
    rows = [item_prompts(tokenizer, p, ProbeSettings(items_per_language=6)).ff.prompt_ids for p in taught_model.prepared]
    calls = _same_beams(model, tokenizer, rows, 5, 16, True)
    assert len(calls) < 16, "the answer-line stop should end the search before max_new_tokens"
    assert 0 in calls or calls[-1] < calls[1], f"no prompt was left out once final: {calls}"
