"""The gold rank is read where the answer starts, on the gold's first content token (issue 10).

Fast tests use the tiny byte-level BPE tokenizer, which splits a leading space off digits and
CJK characters as Gemma's and SmolLM2's do (" 41" -> " ", "4", "1"); the slow ones run both
embedded models and check the invariant that makes the rank meaningful: an answer that begins
with the gold has it at rank 1 where it starts.
"""

from __future__ import annotations

import pytest

from illusion_checks.backends.hf.backend import HFBackend
from illusion_checks.answer_start import leading_blank, rank_target
from illusion_checks.backends.base import DecodeSettings
from illusion_checks.backends.hf.prefix import ff_probes
from illusion_checks.prompts import encode_continuations, encode_prompt
from illusion_checks.prompts import ff_prompt
from illusion_checks.scoring import carries_content, normalize_compact

PROMPT = ff_prompt("The bridge is 41 km long and opened in 2018.", "How long is the bridge?")


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _text(tokenizer, token: int) -> str:
    return tokenizer.decode([token])


def test_a_bare_space_token_is_conditioned_on_never_ranked(tiny_models):
    _, tokenizer = tiny_models["llama"]
    assert [_text(tokenizer, t) for t in _ids(tokenizer, " 41")] == [" ", "4", "1"]
    target = rank_target(tokenizer, PROMPT, _ids(tokenizer, "Paris"), ["41"], chat=False)
    assert target.text == "4" and target.source == "gold"
    assert [_text(tokenizer, t) for t in target.conditioned_ids] == [" "]
    assert target.to_dict(tokenizer)["offset"] == 1 and target.to_dict(tokenizer)["conditioned_on"] == " "


def test_the_rank_is_read_after_the_models_own_leading_newlines(tiny_models):
    _, tokenizer = tiny_models["llama"]
    lead = _ids(tokenizer, "\n") * 2
    target = rank_target(tokenizer, PROMPT, lead + _ids(tokenizer, "Paris"), ["41"], chat=False)
    # No leading space after a newline: the gold follows the newlines as "41", not " 41".
    assert target.conditioned_ids == lead and target.text == "4"
    assert target.to_dict(tokenizer)["conditioned_on"] == "\n\n" and target.boundary_ok
    word = rank_target(tokenizer, PROMPT, lead + _ids(tokenizer, "Paris"), ["bridge"], chat=False)
    assert word.conditioned_ids == lead and word.token == _ids(tokenizer, "bridge")[0]


def test_an_answer_that_begins_with_the_gold_ranks_the_token_it_began_with(tiny_models):
    _, tokenizer = tiny_models["llama"]
    generated = _ids(tokenizer, "\n") + _ids(tokenizer, "41 km, roughly")
    target = rank_target(tokenizer, PROMPT, generated, ["forty-one", "41"], chat=False)
    assert target.begins_with_gold and target.source == "produced"
    assert target.conditioned_ids == generated[:1] and target.token == generated[1]
    late = rank_target(tokenizer, PROMPT, _ids(tokenizer, " It is 41 km"), ["41"], chat=False)
    assert not late.begins_with_gold and late.source == "gold"


def test_a_bullet_or_an_opening_quote_is_conditioned_on_like_whitespace(tiny_models):
    _, tokenizer = tiny_models["llama"]
    bullet = _ids(tokenizer, "\n") + _ids(tokenizer, "*")
    target = rank_target(tokenizer, PROMPT, bullet + _ids(tokenizer, " It is long"), ["41"], chat=False)
    assert target.conditioned_ids[: len(bullet)] == bullet and target.text == "4"
    assert target.to_dict(tokenizer)["conditioned_on"] == "\n* "  # a word follows a bullet with a space
    quote = _ids(tokenizer, "«")
    quoted = rank_target(tokenizer, PROMPT, quote + _ids(tokenizer, "It"), ["41"], chat=False)
    assert quoted.conditioned_ids == quote and quoted.text == "4"  # no space after an opening quote
    produced = rank_target(tokenizer, PROMPT, bullet + _ids(tokenizer, " 41 km"), ["41"], chat=False)
    assert produced.source == "produced" and carries_content(produced.text)


def test_an_end_of_sequence_token_is_not_leading_whitespace(tiny_models):
    _, tokenizer = tiny_models["llama"]
    assert leading_blank(tokenizer, [tokenizer.eos_token_id]) == 0
    assert leading_blank(tokenizer, _ids(tokenizer, " \n") + [tokenizer.eos_token_id]) == 2


def test_boundary_check_flags_a_token_that_straddles_the_answer_start(tiny_models):
    _, tokenizer = tiny_models["llama"]
    # The model began with a bare space; the tokenizer would write " P" as one token, so in the
    # joint encoding no token boundary falls where the gold starts (Appendix B's check fails),
    # and the gold's own encoding after the space is ranked instead.
    space = _ids(tokenizer, " ")
    merged = rank_target(tokenizer, PROMPT, space + _ids(tokenizer, "It"), ["Paris"], chat=False)
    assert not merged.boundary_ok
    assert merged.conditioned_ids == space and merged.token == _ids(tokenizer, "Paris")[0]
    clean = rank_target(tokenizer, PROMPT, _ids(tokenizer, "Paris"), ["41"], chat=False)
    assert clean.boundary_ok


def test_an_item_whose_gold_is_the_greedy_answer_has_rank_1(tiny_models):
    """The scoring pass (a fork of the prompt's cache, ragged batch) must see the distribution
    greedy decoding saw at the answer start: make each item's gold the model's own answer."""
    model, tokenizer = tiny_models["gemma3"]
    prompts = [PROMPT, ff_prompt("长城位于中国北方。", "长城在哪里？"), ff_prompt("Short.", "Q?"),
               ff_prompt("Москва — столица России.", "Какой город столица?")]
    encoded = [encode_continuations(tokenizer, p, encode_prompt(tokenizer, p, False), ["a", "b", "c", "d"], False)
               for p in prompts]
    settings = DecodeSettings(max_new_tokens=6, batch_size=3)
    n = len(encoded)
    first = ff_probes(model, tokenizer, encoded, [("zzz",)] * n, settings, [0] * n, [False] * n)
    answers = [(probe.output,) for probe in first]
    again = ff_probes(model, tokenizer, encoded, answers, settings, [0] * n, [False] * n)
    # A random model's answer that normalizes to nothing (stray bytes) cannot begin with anything.
    scored = [probe for (answer,), probe in zip(answers, again) if normalize_compact(answer)]
    assert len(scored) >= 2, answers
    for probe in scored:
        assert probe.target.begins_with_gold and probe.mc.gold_rank == 1
        assert probe.mc.gold_margin >= 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_real_models_rank_the_gold_where_the_answer_starts(name, embedded_model):
    """On both embedded models, 5 items each of en, de and zh, probed as the gate probes them (batched,
    padded, on a fork of the prompt's cache). Guards:
    - the ranked token is the gold's first content token, with nothing but whitespace before it;
    - an answer that begins with the gold ranks it 1: a consistency check of the scoring pass against
      greedy decoding (the ranked token is then the model's own, so any other rank is a bug);
    - the rank of a demoted gold (source "gold", the population the paper's rank figures are about)
      equals the rank one plain unpadded forward over prompt + conditioned ids gives it, to fp32
      round-off; nothing but this check ties those ranks to the model's real distribution."""
    import torch

    from illusion_checks.datasets import load_dataset
    from illusion_checks.probing import ProbeSettings, item_prompts, prepare_items, probe_model

    loaded = embedded_model(name)
    model, tokenizer = loaded.model, loaded.tokenizer
    settings = ProbeSettings(items_per_language=5, reachability=False)
    prepared = prepare_items(load_dataset("fixtures"), ["en", "de", "zh"], settings)
    outcomes = probe_model(HFBackend(model, tokenizer), prepared, settings)
    begins = [(p.item.id, o) for p, o in zip(prepared, outcomes) if o["ff"]["begins_with_gold"]]
    assert begins, f"{name} should begin some fixture answers with the gold"
    assert [(i, o["gold_rank"]) for i, o in begins if o["gold_rank"] != 1] == []
    for p, o in zip(prepared, outcomes):
        token = o["gold_token"]
        assert carries_content(token["text"]), (p.item.id, token)  # never a whitespace-only token
        assert not carries_content(token["conditioned_on"]) and token["offset"] >= 0  # nothing with content before it
        assert o["one_shot"]["exemplar_id"] not in {q.item.id for q in prepared if q.item.lang == p.item.lang}
    demoted = [(p, o) for p, o in zip(prepared, outcomes) if o["gold_token"]["source"] == "gold"]
    assert len(demoted) >= 3, f"{name} should fail to begin at least 3 of 15 answers with the gold"
    for p, o in demoted:
        ff = item_prompts(tokenizer, p, settings).ff
        with torch.no_grad():
            generated = model.generate(torch.tensor([ff.prompt_ids]), max_new_tokens=settings.decode.max_new_tokens,
                                       do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id)[0, len(ff.prompt_ids):].tolist()
        target = rank_target(tokenizer, ff.prompt, generated, p.item.golds, ff.chat, ff.prompt_ids)
        assert (target.token, len(target.conditioned_ids)) == (o["gold_token"]["id"], o["gold_token"]["offset"])
        with torch.no_grad():
            logits = model(torch.tensor([ff.prompt_ids + target.conditioned_ids])).logits[0, -1].float()
        gold = logits[target.token]
        lowest, highest = (1 + int((logits > gold + eps).sum()) for eps in (1e-3, -1e-3))
        assert lowest <= o["gold_rank"] <= highest, (p.item.id, o["gold_rank"], lowest, highest)
