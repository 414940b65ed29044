"""Tiny randomly initialised Hugging Face models with a real (small, byte-level BPE) tokenizer,
built in-process: fast, offline stand-ins for the Llama / Qwen2 / Qwen3 / Mistral / Gemma3 families
(`tiny_lm`, the one factory; `tiny_model` adds the tokenizer); and one tiny
model briefly trained to answer a few fixture items, for tests that need correct answers."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch

from illusion_checks.datasets import QAItem, fixture_files, fixture_root, load_dataset
from illusion_checks.probing import PreparedItem, ProbeSettings, prepare_items
from illusion_checks.prompts import encode_prompt
from illusion_checks.prompts import ff_prompt

FIXTURES = fixture_root()  # the embedded fixture set (package data)
ARCHS = ("llama", "qwen2", "gemma3")


@lru_cache(maxsize=1)
def tiny_tokenizer():
    """A 512-token byte-level BPE trained on the fixture passages (covers every script)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = []
    for path in fixture_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row["context"], row["question"], row["answer"]]
    texts.append("Context: Question: Answer in a few words: Candidate answers:\n- ")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.padding_side = "left"
    return tokenizer


SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2,  # grouped-query attention
             tie_word_embeddings=True)
COMPRESS_ARCHS = ("llama", "qwen2", "qwen3", "mistral", "gemma3")  # tiny_lm also builds these


def tiny_config(arch: str, vocab_size: int, sliding_window: int = 8, **overrides: Any):
    """A 2-layer config of `arch` (GQA: 4 query heads, 2 KV heads; tied embeddings). Gemma 3 alternates
    sliding-window and full-attention layers, the window shorter than the test sequences, so the two
    layer types really differ."""
    import transformers as tf

    options = {**SIZES, "vocab_size": vocab_size, **overrides}
    if arch == "llama":
        return tf.LlamaConfig(**options)
    if arch == "qwen2":
        return tf.Qwen2Config(**options)
    if arch == "qwen3":
        return tf.Qwen3Config(head_dim=16, **options)
    if arch == "mistral":
        return tf.MistralConfig(**options)
    if arch == "gemma3":
        alternating = ["sliding_attention", "full_attention"] * (options["num_hidden_layers"] // 2)
        options.setdefault("layer_types", alternating)
        return tf.Gemma3TextConfig(head_dim=16, sliding_window=sliding_window, **options)
    raise ValueError(f"unknown tiny arch {arch!r}; expected one of {COMPRESS_ARCHS}")


def tiny_lm(arch: str = "llama", seed: int = 0, vocab_size: int = 128, **overrides: Any) -> torch.nn.Module:
    """The one tiny-model factory: a random 2-layer causal LM of `arch`, fp32, in eval mode."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(arch, vocab_size, **overrides)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def tiny_model(arch: str = "llama", seed: int = 0):
    """(model, tokenizer): `tiny_lm` over the fixture tokenizer's vocabulary, in fp32 eval mode. Its
    Gemma 3 has two sliding-window layers (window 64): the decode and beam tests' early-stop
    preconditions were written against these weights."""
    tokenizer = tiny_tokenizer()
    gemma3 = dict(sliding_window=64, query_pre_attn_scalar=16, layer_types=["sliding_attention"] * 2)
    model = tiny_lm(arch, seed, vocab_size=len(tokenizer), max_position_embeddings=2048, pad_token_id=0,
                    bos_token_id=1, eos_token_id=2, **(gemma3 if arch == "gemma3" else {}))
    return model, tokenizer


def tiny_calibration(nsamples: int = 8, seqlen: int = 32, seed: int = 1, vocab_size: int = 128) -> torch.Tensor:
    """Random token ids [nsamples, seqlen] for `tiny_lm`'s default vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (nsamples, seqlen), generator=generator)


def clone(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy that keeps tied weights tied."""
    return copy.deepcopy(model)


def save_tiny(directory: Path, arch: str = "llama", seed: int = 0) -> Path:
    """A loadable model directory (safetensors + tokenizer)."""
    model, tokenizer = tiny_model(arch, seed)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def trained_tiny_model(items: Sequence[QAItem], answers: Sequence[str], steps: int = 60, lr: float = 5e-3,
                       seed: int = 0, tokenizer: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer): a tiny llama taught to answer each item's FF prompt with " " + its answer
    + "\n" (a few seconds of Adam on CPU), so that fast tests see a model that answers correctly;
    over the fixture tokenizer's vocabulary, or `tokenizer`'s (a real family's, tests.helpers.vocab)."""
    pairs = [(ff_prompt(item.context, item.question), f" {answer}\n") for item, answer in zip(items, answers, strict=True)]
    return taught(pairs, tokenizer, steps, lr, seed)


def taught(pairs: Sequence[tuple[str, str]], tokenizer: Any = None, steps: int = 60, lr: float = 5e-3, seed: int = 0,
           chat: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer): a tiny llama taught to continue each prompt with its completion, over the
    fixture tokenizer or `tokenizer`. Prompts are encoded as the engine encodes them (`chat`: a
    chat-templated prompt, its special tokens already written); the loss covers the completion
    only, read off those positions alone, so a 150k-token vocabulary costs no more than a small one."""
    if tokenizer is None:
        model, tokenizer = tiny_model("llama", seed)
    else:
        model = tiny_lm("llama", seed, vocab_size=len(tokenizer), max_position_embeddings=2048,
                        pad_token_id=tokenizer.pad_token_id)
    rows = []
    for prompt, completion in pairs:
        prompt_ids = encode_prompt(tokenizer, prompt, chat=chat)
        ids = encode_prompt(tokenizer, prompt + completion, chat=chat)
        assert ids[: len(prompt_ids)] == prompt_ids, "the completion must not merge with the prompt's last token"
        rows.append((ids, len(prompt_ids)))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, _) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    # Position p predicts token p + 1: the completion's tokens are predicted from n_prompt - 1 on.
    at = [(i, p) for i, (ids, n_prompt) in enumerate(rows) for p in range(n_prompt - 1, len(ids) - 1)]
    rows_at, positions = torch.tensor([i for i, _ in at]), torch.tensor([p for _, p in at])
    targets = input_ids[rows_at, positions + 1]
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        hidden = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[rows_at, positions]), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


@dataclass(frozen=True)
class TaughtModel:
    """A tiny model taught the first `n_taught` of `prepared`; the rest it never saw."""

    model: Any
    tokenizer: Any
    prepared: list[PreparedItem]
    n_taught: int


def taught_english_model() -> TaughtModel:
    """Six prepared English fixture items; the model is taught the first four, the first of them
    with words after the gold ("<gold> indeed": correct by containment, not an exact match)."""
    prepared = prepare_items(load_dataset("fixtures"), ["en"], ProbeSettings(items_per_language=6))
    taught = prepared[:4]
    answers = [f"{taught[0].item.gold} indeed", *(p.item.gold for p in taught[1:])]
    model, tokenizer = trained_tiny_model([p.item for p in taught], answers)
    return TaughtModel(model, tokenizer, prepared, len(taught))
