"""The answer-start rank on the real tokenizers of the families users gate (issue 22): Llama 2 /
Mistral and Phi-3 (SentencePiece), Llama 3, Qwen 2.5, Qwen 3, DeepSeek (byte-level BPE), from
llama.cpp's vocabulary files (`make vocab`, tests.helpers.vocab).

SentencePiece decodes a token's leading space only in context (a bare "▁" alone decodes to
nothing), which once put the rank after a doubled space with `boundary_ok` still true. Each test
here reads texts in context, as a user's model sees them, and failed on that code for llama-spm.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from illusion_checks.answer_start import in_context, rank_target
from illusion_checks.backends.hf.backend import HFBackend
from illusion_checks.datasets import load_dataset
from illusion_checks.probing import ProbeSettings, item_prompts, prepare_items, probe_outcomes
from illusion_checks.prompts import encode_continuations, encode_prompt, ff_prompt
from illusion_checks.scoring import carries_content
from tests.helpers.tiny import tiny_lm, trained_tiny_model
from tests.helpers.vocab import FAMILIES, family_tokenizer, missing_files

PROMPT = ff_prompt("The station opened in 1941, 55公里 from the old town of Paris.", "When did the station open?")


@pytest.fixture(scope="module")
def tokenizers():
    from tests.helpers.need import missing

    if missing_files():
        missing(f"the vocabulary files of {missing_files()} are not in the cache; `make vocab` fetches them")
    return {family: family_tokenizer(family) for family in FAMILIES}


@dataclass(frozen=True)
class Case:
    """The model answered `output` (in its own tokenization, after the prompt); the gold is `gold`.
    `lead` is the model's own content-free start, `variant` the gold as it is written after it."""

    name: str
    output: str
    gold: str
    lead: str
    variant: str
    produced: bool = False


CASES = [
    Case("numeric gold", " The station", "1941", "", " 1941"),
    Case("numeric gold after the model's own space", " 1942", "1941", " ", "1941"),
    Case("CJK gold", " The town", "55公里", "", " 55公里"),
    Case("CJK gold after a word", " Paris", "公里", "", " 公里"),
    Case("Latin word", " The station", "Paris", "", " Paris"),
    Case("after a newline", "\nThe station", "Paris", "\n", "Paris"),
    Case("after a bullet", "\n* The station", "Paris", "\n* ", "Paris"),
    Case("after an opening quote", " «The station»", "Paris", " «", "Paris"),
    Case("Latin word after the model's own space", " 1942", "Paris", " ", "Paris"),
    Case("the model begins with the gold", " 1941, in spring", "1941", " ", "1941", produced=True),
]


def _generated(tokenizer, prompt_ids: list[int], output: str) -> list[int]:
    """The model's tokens for `output`: the tail of the joint encoding, as it would write them, or
    (where the tokenizer joins the prompt's ":" with a newline) the output encoded on its own."""
    joint = encode_prompt(tokenizer, PROMPT + output, chat=False)
    if joint[: len(prompt_ids)] == prompt_ids:
        return joint[len(prompt_ids):]
    return tokenizer(output, add_special_tokens=False)["input_ids"]


def _targets(tokenizer):
    prompt_ids = encode_prompt(tokenizer, PROMPT, chat=False)
    return prompt_ids, [(case, rank_target(tokenizer, PROMPT, _generated(tokenizer, prompt_ids, case.output),
                                           [case.gold], False, prompt_ids)) for case in CASES]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_crafted_cases_condition_on_the_models_own_lead_and_rank_the_path_exactly(tokenizers, family):
    """For every crafted case:
    - the ids given are the model's own content-free start; the path ends on the gold's first
      content token with only content-free tokens before it;
    - prompt + conditioned ids + path decode to exactly prompt + lead + gold variant: one space,
      never two (the SentencePiece bug doubled it after a model's bare "▁") and never none;
    - a random tiny model over the family's vocabulary, scored as the engine scores (a ragged,
      left-padded batch on forks of each prompt's cache), ranks each path token as one plain
      unpadded forward over prompt + conditioned ids + the path before it does."""
    tokenizer = tokenizers[family]
    prompt_ids, targets = _targets(tokenizer)
    for case, target in targets:
        where = (family, case.name, tokenizer.convert_ids_to_tokens(target.conditioned_ids + target.path))
        generated = _generated(tokenizer, prompt_ids, case.output)
        assert target.conditioned_ids == generated[: len(target.conditioned_ids)], where  # only the model's own
        given = in_context(tokenizer, prompt_ids, target.conditioned_ids)
        read = in_context(tokenizer, prompt_ids, target.conditioned_ids + target.path)
        assert not carries_content(given) and case.lead.startswith(given), where
        assert (case.lead + case.variant).startswith(read.rstrip("\ufffd")), (where, read)
        assert len(read.rstrip("\ufffd")) > len(case.lead) or read.endswith("\ufffd"), (where, read)
        assert target.path and carries_content(target.text) and target.boundary_ok, (where, target)
        assert not any(carries_content(text) for text in target.texts[:-1]), (where, target.texts)
        assert target.source == ("produced" if case.produced else "gold"), where
    model = tiny_lm("llama", seed=1, vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                    max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id)
    short = encode_prompt(tokenizer, "Answer in a few words:", chat=False)  # a ragged batch: padding on the left
    prompts = [prompt_ids if k % 2 else short for k in range(len(targets))]
    scored = HFBackend(model, tokenizer).score(prompts, [[[7]]] * len(targets),
                                               [(t.conditioned_ids, t.path) for _, t in targets])
    with torch.no_grad():
        for prompt, (case, target), (_, path_ranks) in zip(prompts, targets, scored):
            logits = model(torch.tensor([prompt + target.conditioned_ids + target.path])).logits[0].float()
            assert len(path_ranks) == len(target.path), (family, case.name)
            for k, token in enumerate(target.path):
                row = logits[len(prompt) + len(target.conditioned_ids) + k - 1]
                lowest, highest = (1 + int((row > row[token] + eps).sum()) for eps in (1e-4, -1e-4))
                assert lowest <= path_ranks[k][0] <= highest, (family, case.name, k, path_ranks)


# The table: the model answered " 1942", the gold is 1941. What is given, and what is ranked.
EXPECTED_1941 = {
    "llama-spm": (" ", ("1",)), "phi-3": (" ", ("1",)), "llama-bpe": (" ", ("194",)),
    "qwen2": (" ", ("1",)), "qwen35": (" ", ("1",)), "deepseek-llm": (" ", ("1",)),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_numeric_near_miss_is_ranked_after_one_space(tokenizers, family):
    """Hand-written per family: after the model's own space, the gold's first digits (Llama 3 writes
    numbers in groups of three), never after a second space."""
    tokenizer = tokenizers[family]
    prompt_ids, targets = _targets(tokenizer)
    target = dict((case.name, t) for case, t in targets)["numeric gold after the model's own space"]
    assert (in_context(tokenizer, prompt_ids, target.conditioned_ids), target.texts) == EXPECTED_1941[family]


TAUGHT = [  # (lang, gold): taught to answer with the gold, or (a near miss) with `answer`
    ("en", "Maurice Koechlin", None), ("en", "Madeira River", None), ("zh", "嘉峪关", None),
    ("es", "1882", None), ("de", "2009", "2010"),
]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_model_taught_on_the_familys_vocabulary_ranks_through_the_whole_engine(tokenizers, family):
    """A tiny llama over the family's real vocabulary, taught five fixture items (one a numeric near
    miss: it answers 2010 for 2009), probed by the engine as the gate probes it. Every answer that
    begins with the gold has rank 1; every ranked token carries content and reads, with what is
    given before it, exactly as prompt + lead + gold; nothing with content is given; each MC option's
    ids are the joint encoding's tail and read as " option" after the prompt."""
    tokenizer = tokenizers[family]
    dataset = load_dataset("fixtures")
    settings = ProbeSettings(items_per_language=66, reachability=False)
    pool = prepare_items(dataset, sorted({lang for lang, _, _ in TAUGHT}), settings)
    prepared = [next(p for p in pool if (p.item.lang, p.item.gold) == (lang, gold)) for lang, gold, _ in TAUGHT]
    answers = [answer or gold for _, gold, answer in TAUGHT]
    model, _ = trained_tiny_model([p.item for p in prepared], answers, steps=80, tokenizer=tokenizer)
    backend = HFBackend(model, tokenizer)
    outcomes = probe_outcomes(backend, prepared, settings)
    begins = [o for o in outcomes if o.ff.begins_with_gold]
    print(f"{family}: rank-1 share among {len(begins)} begins-with-gold outcomes: "
          f"{sum(o.gold_rank == 1 for o in begins) / max(1, len(begins)):.2f}; outputs {[o.ff.output for o in outcomes]}")
    assert len(begins) >= 3, [o.ff.output for o in outcomes]
    assert all(o.gold_rank == 1 for o in begins), [(o.ff.output, o.gold_rank) for o in begins]
    near_miss = outcomes[-1]
    assert near_miss.ff.output.startswith("2010") and near_miss.gold_token.source == "gold"
    for p, o in zip(prepared, outcomes):
        q = item_prompts(tokenizer, p, settings)
        token = o.gold_token
        assert carries_content(token.text) and not carries_content(token.conditioned_on), (p.item.gold, token)
        assert token.boundary_ok and [step.id for step in token.path][-1] == token.id
        # What is given must be the model's own first tokens, and, read in context with the path,
        # the prompt's continuation exactly as written: one space at most, then the gold.
        greedy = backend.greedy_tokens([q.ff.prompt_ids], settings.decode)[0]
        given = greedy[: token.offset]
        read = in_context(tokenizer, q.ff.prompt_ids, given + [step.id for step in token.path])
        assert in_context(tokenizer, q.ff.prompt_ids, given) == token.conditioned_on, (p.item.gold, token)
        assert read == token.conditioned_on + "".join(step.text for step in token.path), (p.item.gold, read)
        assert "  " not in read and read.strip(), (p.item.gold, read)
        if token.source == "gold":  # the gold's first characters, after the given lead
            assert p.item.gold.startswith(read[len(token.conditioned_on):].strip().rstrip("\ufffd")), (p.item.gold, read)
        again = encode_continuations(tokenizer, q.ff.prompt, q.ff.prompt_ids, p.options, chat=False)
        for option, ids in zip(p.options, again.option_ids):
            joint = encode_prompt(tokenizer, q.ff.prompt + " " + option, chat=False)
            assert ids == joint[len(q.ff.prompt_ids):] == q.ff.option_ids[p.options.index(option)]
            assert in_context(tokenizer, q.ff.prompt_ids, ids) == " " + option, (family, option)
