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


def test_a_bare_space_the_gold_adds_is_ranked_on_its_path(tiny_models):
    """Issue 22 point 5: the tiny tokenizer writes " 41" as " ", "4", "1" (as Gemma, Qwen and
    SmolLM2 do). A model that answered "Paris" never wrote that space, so it is not given: it is
    ranked at its own position, then "4" after it, the paper's leading-space variant."""
    _, tokenizer = tiny_models["llama"]
    assert [_text(tokenizer, t) for t in _ids(tokenizer, " 41")] == [" ", "4", "1"]
    target = rank_target(tokenizer, PROMPT, _ids(tokenizer, "Paris"), ["41"], chat=False)
    assert target.text == "4" and target.source == "gold" and target.boundary_ok
    assert target.conditioned_ids == [] and target.path == _ids(tokenizer, " 41")[:2] and target.texts == (" ", "4")
    block = target.to_dict([(3, -0.5), (1, 0.25)])
    assert block["offset"] == 0 and block["conditioned_on"] == "" and block["id"] == target.path[-1]
    assert block["path"] == [{"id": target.path[0], "text": " ", "rank": 3, "margin": -0.5},
                             {"id": target.path[1], "text": "4", "rank": 1, "margin": 0.25}]


def test_the_rank_is_read_after_the_models_own_leading_newlines(tiny_models):
    _, tokenizer = tiny_models["llama"]
    lead = _ids(tokenizer, "\n") * 2
    target = rank_target(tokenizer, PROMPT, lead + _ids(tokenizer, "Paris"), ["41"], chat=False)
    # No leading space after a newline: the gold follows the newlines as "41", not " 41".
    assert target.conditioned_ids == lead and target.path == _ids(tokenizer, "41")[:1] and target.text == "4"
    assert target.to_dict()["conditioned_on"] == "\n\n" and target.boundary_ok
    word = rank_target(tokenizer, PROMPT, lead + _ids(tokenizer, "Paris"), ["bridge"], chat=False)
    assert word.conditioned_ids == lead and word.path == _ids(tokenizer, "bridge")[:1]


def test_an_answer_that_begins_with_the_gold_ranks_the_token_it_began_with(tiny_models):
    _, tokenizer = tiny_models["llama"]
    generated = _ids(tokenizer, "\n") + _ids(tokenizer, "41 km, roughly")
    target = rank_target(tokenizer, PROMPT, generated, ["forty-one", "41"], chat=False)
    assert target.begins_with_gold and target.source == "produced"
    assert target.conditioned_ids == generated[:1] and target.path == [generated[1]]
    late = rank_target(tokenizer, PROMPT, _ids(tokenizer, " It is 41 km"), ["41"], chat=False)
    assert not late.begins_with_gold and late.source == "gold"


def test_a_bullet_or_an_opening_quote_is_conditioned_on_like_whitespace(tiny_models):
    """The model's own bullet or quote is given; the space a word takes after a bullet is the gold's."""
    _, tokenizer = tiny_models["llama"]
    bullet = _ids(tokenizer, "\n") + _ids(tokenizer, "*")
    target = rank_target(tokenizer, PROMPT, bullet + _ids(tokenizer, "It is long"), ["41"], chat=False)
    assert target.conditioned_ids == bullet and target.texts == (" ", "4")
    assert target.to_dict()["conditioned_on"] == "\n*"
    spaced = rank_target(tokenizer, PROMPT, bullet + _ids(tokenizer, " It is long"), ["41"], chat=False)
    assert spaced.conditioned_text == "\n* " and spaced.texts == ("4",)  # the model wrote the space itself
    quote = _ids(tokenizer, "«")
    quoted = rank_target(tokenizer, PROMPT, quote + _ids(tokenizer, "It"), ["41"], chat=False)
    assert quoted.conditioned_ids == quote and quoted.texts == ("4",)  # no space after an opening quote
    produced = rank_target(tokenizer, PROMPT, bullet + _ids(tokenizer, " 41 km"), ["41"], chat=False)
    assert produced.source == "produced" and carries_content(produced.text)


def test_an_end_of_sequence_token_is_not_leading_whitespace(tiny_models):
    _, tokenizer = tiny_models["llama"]
    assert leading_blank(tokenizer, [tokenizer.eos_token_id]) == 0
    assert leading_blank(tokenizer, _ids(tokenizer, " \n") + [tokenizer.eos_token_id]) == 2


def test_a_token_joining_the_models_space_to_the_gold_is_ranked_from_where_they_part(tiny_models):
    """The model began with a bare space; the tokenizer writes " P" as one token, so the gold's
    encoding shares none of the model's lead: its path starts at the prompt's end (the leading-space
    variant), and its text reads exactly " P", no space doubled."""
    _, tokenizer = tiny_models["llama"]
    space = _ids(tokenizer, " ")
    merged = rank_target(tokenizer, PROMPT, space + _ids(tokenizer, "It"), ["Paris"], chat=False)
    assert merged.boundary_ok and merged.conditioned_ids == []
    assert merged.path == _ids(tokenizer, " Paris")[:1] and merged.texts[0].startswith(" P")


def test_a_gold_that_merges_with_the_prompts_last_token_fails_the_boundary_check(tiny_models):
    """A prompt ending in a space: the tokenizer joins that space with the gold (" P"), so the
    joint encoding does not keep the prompt's ids; the gold's own encoding is ranked and the
    outcome says why the boundary check failed."""
    _, tokenizer = tiny_models["llama"]
    assert len(_ids(tokenizer, " P")) == 1
    target = rank_target(tokenizer, PROMPT + " ", _ids(tokenizer, "It"), ["Paris"], chat=False)
    assert not target.boundary_ok and "merges with the prompt's last token" in target.boundary_reason
    assert target.to_dict()["boundary_reason"] == target.boundary_reason
    clean = rank_target(tokenizer, PROMPT, _ids(tokenizer, "Paris"), ["41"], chat=False)
    assert clean.boundary_ok and "boundary_reason" not in clean.to_dict()


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
        assert probe.target.begins_with_gold and probe.mc.path[0][0] == 1 and len(probe.mc.path) == 1
        assert probe.mc.path[0][1] >= 0


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
        assert [step["id"] for step in o["gold_token"]["path"]] == target.path
        with torch.no_grad():
            row = model(torch.tensor([ff.prompt_ids + target.conditioned_ids + target.path])).logits[0].float()
        for k, (token, step) in enumerate(zip(target.path, o["gold_token"]["path"])):
            logits = row[len(ff.prompt_ids) + len(target.conditioned_ids) + k - 1]
            lowest, highest = (1 + int((logits > logits[token] + eps).sum()) for eps in (1e-3, -1e-3))
            assert lowest <= step["rank"] <= highest, (p.item.id, k, step["rank"], lowest, highest)
        assert o["gold_rank"] == max(step["rank"] for step in o["gold_token"]["path"])
