"""Torch probes on tiny real models: MC scores, gold rank and boundary check, batching invariance."""

from __future__ import annotations

import pytest
import torch

from illusion_checks.backends.base import DecodeSettings, answer_text
from illusion_checks.backends.hf.prefix import ff_probes, greedy
from illusion_checks.probing import item_seed
from illusion_checks.prompts import encode_continuations, encode_prompt, ff_prompt
from tests.helpers.generate_oracle import PROMPTS

OPTIONS = [["1889", "Paris", "1900", "the tower"], ["Москва", "России", "Киев", "Минск"],
           ["中国北方", "长城", "北京", "上海"], ["القاهرة", "مصر", "دمشق", "بغداد"], ["a", "bb", "ccc", "dddd"]]
GOLDS = [(options[0],) for options in OPTIONS]  # the gold is each item's first option


def _encoded(tokenizer):
    out = []
    for prompt, options in zip(PROMPTS, OPTIONS):
        ids = encode_prompt(tokenizer, prompt, chat=False)
        out.append(encode_continuations(tokenizer, prompt, ids, options, chat=False))
    return out


def _naive_scores(model, encoded):
    """One full forward per option, no padding: the definition of the MC score."""
    scores = []
    for enc in encoded:
        row = []
        for option in enc.option_ids:
            ids = torch.tensor([enc.prompt_ids + option])
            logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
            n = len(option)
            row.append(float(sum(logprobs[len(enc.prompt_ids) - 1 + k, option[k]] for k in range(n))))
        scores.append(row)
    return scores


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_mc_scores_and_rank_match_unbatched_full_forward(tiny_models, arch):
    model, tokenizer = tiny_models[arch]
    encoded = _encoded(tokenizer)
    probes = ff_probes(model, tokenizer, encoded, GOLDS * (len(encoded) // len(GOLDS)), DecodeSettings(batch_size=3),
                       [0] * len(encoded), [False] * len(encoded))
    with torch.no_grad():
        naive = _naive_scores(model, encoded)
        for enc, probe, expected in zip(encoded, probes, naive):
            result, target = probe.mc, probe.target
            assert result.scores == pytest.approx(expected, abs=1e-4)
            # The rank's definition: one unpadded forward over the prompt, the tokens before the
            # answer start and the path, and each path token's place in the next-token
            # distribution at its own position.
            assert len(result.path) == len(target.path) >= 1
            ids = torch.tensor([enc.prompt_ids + target.conditioned_ids + target.path])
            start = len(enc.prompt_ids) + len(target.conditioned_ids) - 1
            for k, (token, (rank, margin)) in enumerate(zip(target.path, result.path)):
                logprobs = torch.log_softmax(model(ids).logits[0, start + k].float(), -1)
                assert rank == int((logprobs >= logprobs[token]).sum())  # ties count above the gold
                others = logprobs.clone()
                others[token] = -float("inf")
                assert margin == pytest.approx(float(logprobs[token] - others.max()), abs=1e-4)


def test_a_token_tied_with_the_gold_counts_above_it(tiny_models):
    """The one tie rule (vLLM's): the rank counts every token at least as likely as the gold. Tokens
    whose (tied) embedding rows are equal have equal logits at every position: the gold's rank then
    counts its twin (4, where the strict reading said 3)."""
    from illusion_checks.backends.hf.backend import HFBackend
    from tests.helpers.tiny import clone

    model, tokenizer = tiny_models["llama"]
    model = clone(model)
    prompt = encode_prompt(tokenizer, PROMPTS[0], chat=False)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([prompt])).logits[0, -1].float(), -1)
        gold, twin = (int(t) for t in logprobs.argsort(descending=True)[[2, 40]])  # rank 3 before the tie
        model.get_input_embeddings().weight[twin] = model.get_input_embeddings().weight[gold]
        tied = torch.log_softmax(model(torch.tensor([prompt])).logits[0, -1].float(), -1)
    assert tied[twin] == tied[gold] and int((tied > tied[gold]).sum()) == 2
    scores, path = HFBackend(model, tokenizer).score([prompt], [[[gold]]], [([], [gold])])[0]
    assert [rank for rank, _ in path] == [4]  # the two above it, its twin, itself
    assert path[0][1] == pytest.approx(float(tied[gold] - tied.max()), abs=1e-5)
    assert scores == [pytest.approx(float(tied[gold]), abs=1e-5)]


def test_boundary_check_uses_joint_encoding_and_flags_merges(tiny_models):
    _, tokenizer = tiny_models["llama"]
    prompt = ff_prompt("Москва — столица.", "Какой город?")
    ids = encode_prompt(tokenizer, prompt, chat=False)
    enc = encode_continuations(tokenizer, prompt, ids, ["Москва", "Киев", "Минск", "Рим"], chat=False)
    joint = encode_prompt(tokenizer, prompt + " Москва", chat=False)
    assert enc.option_ids[0] == joint[len(ids):] and enc.gold_token_boundary_ok
    # When the prompt's own ids are not a prefix of the joint encoding (a merge across the
    # boundary), the check must say so and fall back to the standalone leading-space encoding.
    stub = "Context: x\n\nAnswer in a few wo"
    stub_ids = encode_prompt(tokenizer, stub, chat=False)
    merged = encode_continuations(tokenizer, stub + "rds", stub_ids, ["x"], chat=False)
    assert not merged.gold_token_boundary_ok
    assert merged.option_ids == [tokenizer(" x", add_special_tokens=False)["input_ids"]]


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_results_do_not_depend_on_batch_size(tiny_models, arch):
    model, tokenizer = tiny_models[arch]
    prompts = [encode_prompt(tokenizer, p, chat=False) for p in PROMPTS] * 4  # 20 prompts, ragged lengths
    encoded = _encoded(tokenizer) * 4
    outputs, scores, ff = {}, {}, {}
    n = len(encoded)
    for batch in (1, 4, 16):
        settings = DecodeSettings(max_new_tokens=8, batch_size=batch)
        outputs[batch] = greedy(model, tokenizer, prompts, settings)
        probes = ff_probes(model, tokenizer, encoded, GOLDS * 4, settings, [0] * n, [False] * n)
        scores[batch] = [(p.mc.scores, p.mc.path) for p in probes]
        ff[batch] = [p.output for p in probes]
    assert outputs[1] == outputs[4] == outputs[16]
    assert ff[1] == ff[4] == ff[16] == outputs[1]  # greedy from the shared prefix = plain greedy
    for batch in (4, 16):
        for (a, rank_a), (b, rank_b) in zip(scores[1], scores[batch]):
            assert a == pytest.approx(b, abs=1e-4) and rank_a == rank_b
            assert max(range(4), key=a.__getitem__) == max(range(4), key=b.__getitem__)


def _reach(model, tokenizer, encoded, settings, seeds):
    n = len(encoded)
    return ff_probes(model, tokenizer, encoded, GOLDS[:n], settings, seeds, [True] * n)


def test_samples_are_seeded_per_item_not_per_batch(tiny_models):
    model, tokenizer = tiny_models["llama"]
    encoded = _encoded(tokenizer)
    seeds = [item_seed(42, f"en:{n}") for n in range(len(encoded))]
    wide = _reach(model, tokenizer, encoded, DecodeSettings(max_new_tokens=6, num_samples=4, num_beams=2, batch_size=16), seeds)
    alone = _reach(model, tokenizer, encoded[2:3], DecodeSettings(max_new_tokens=6, num_samples=4, num_beams=2, batch_size=1), seeds[2:3])
    assert wide[2].sample == alone[0].sample
    assert len(set(wide[0].sample)) > 1  # actually sampling, not greedy
    again = _reach(model, tokenizer, encoded, DecodeSettings(max_new_tokens=6, num_samples=4, num_beams=2, batch_size=16), seeds)
    assert [p.sample for p in again] == [p.sample for p in wide]


def test_beam_from_the_shared_prefix_equals_plain_beam_search(tiny_models):
    model, tokenizer = tiny_models["qwen2"]
    encoded = _encoded(tokenizer)[:3]
    settings = DecodeSettings(max_new_tokens=5, num_beams=5, num_samples=2, batch_size=4)
    out = _reach(model, tokenizer, encoded, settings, [1, 2, 3])
    assert [len(p.beam) for p in out] == [5, 5, 5]
    with torch.no_grad():
        ids = torch.tensor([encoded[1].prompt_ids])
        plain = model.generate(ids, attention_mask=torch.ones_like(ids), num_beams=5, num_return_sequences=5,
                               max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    texts = [answer_text(t, True) for t in tokenizer.batch_decode(plain[:, ids.shape[1]:], skip_special_tokens=True)]
    assert out[1].beam == texts


@pytest.mark.parametrize("raw, expected", [
    (" Paris\nQuestion: x", "Paris"), ("\n\n 1889 \n", "1889"), ("", ""), ("   \n  ", ""), ("no newline", "no newline"),
])
def test_answer_is_the_first_non_empty_line(raw, expected):
    assert answer_text(raw, stop_at_newline=True) == expected


def test_seeded_nucleus_samples_within_the_nucleus_with_the_right_frequencies():
    from transformers.generation.logits_process import TopPLogitsWarper

    from illusion_checks.backends.hf.decode import SeededNucleus

    torch.manual_seed(0)
    logits = torch.randn(1, 5000) * 3
    reference = TopPLogitsWarper(0.9)(None, logits.clone())[0]
    allowed, expected = torch.isfinite(reference), torch.softmax(reference, -1)
    picks = SeededNucleus(0.9, list(range(4000)))(logits.repeat(4000, 1), list(range(4000)))
    assert bool(allowed[picks].all()), "a token outside transformers' nucleus was sampled"
    empirical = torch.bincount(picks, minlength=5000).float() / len(picks)
    assert float((empirical - expected).abs().sum() / 2) < 0.06  # total variation distance
    flat = SeededNucleus(0.9, [1, 2])(torch.zeros(2, 3000), [0, 1])  # no peak: the nucleus spans the floors
    assert flat.shape == (2,) and bool((flat < 3000).all())
