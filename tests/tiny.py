"""Tiny randomly initialised Hugging Face models with a real (small, byte-level BPE) tokenizer,
built in-process: fast, offline stand-ins for the Llama / Qwen2 / Gemma3 families."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "qa"
ARCHS = ("llama", "qwen2", "gemma3")


@lru_cache(maxsize=1)
def tiny_tokenizer():
    """A 512-token byte-level BPE trained on the fixture passages (covers every script)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
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


def tiny_config(arch: str, vocab_size: int):
    """GQA (4 query heads, 2 KV heads), tied embeddings, 2 layers."""
    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common)
    if arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    if arch == "gemma3":
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig(**common, head_dim=16, sliding_window=64, query_pre_attn_scalar=16)
    raise ValueError(f"unknown tiny arch {arch!r}; expected one of {ARCHS}")


def tiny_model(arch: str = "llama", seed: int = 0):
    """(model, tokenizer) in fp32 eval mode."""
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, len(tokenizer)), dtype=torch.float32).eval()
    return model, tokenizer


def save_tiny(directory: Path, arch: str = "llama", seed: int = 0) -> Path:
    """A loadable model directory (safetensors + tokenizer)."""
    model, tokenizer = tiny_model(arch, seed)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
