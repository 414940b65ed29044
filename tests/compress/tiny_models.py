"""Tiny random causal LMs (Llama, Qwen2, Qwen3, Mistral, Gemma3) built in-process, fp32 on the CPU."""

from __future__ import annotations

import copy

import torch

COMMON = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped-query attention
    vocab_size=128,
    tie_word_embeddings=True,
)
ARCHS = ("llama", "qwen2", "gemma3")


def tiny_model(arch: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A 2-layer random model of `arch`, in eval mode."""
    import transformers as tf

    options = {**COMMON, **overrides}
    if arch == "llama":
        config, cls = tf.LlamaConfig(**options), tf.LlamaForCausalLM
    elif arch == "qwen2":
        config, cls = tf.Qwen2Config(**options), tf.Qwen2ForCausalLM
    elif arch == "qwen3":
        config, cls = tf.Qwen3Config(head_dim=16, **options), tf.Qwen3ForCausalLM
    elif arch == "mistral":
        config, cls = tf.MistralConfig(**options), tf.MistralForCausalLM
    elif arch == "gemma3":
        # A sliding window shorter than the calibration sequences, so the two layer types really differ.
        layer_types = ["sliding_attention", "full_attention"] * (options["num_hidden_layers"] // 2)
        config = tf.Gemma3TextConfig(head_dim=16, sliding_window=8, layer_types=layer_types, **options)
        cls = tf.Gemma3ForCausalLM
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    return cls(config).float().eval()


def tiny_calibration(nsamples: int = 8, seqlen: int = 32, seed: int = 1) -> torch.Tensor:
    """Random token ids [nsamples, seqlen]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, COMMON["vocab_size"], (nsamples, seqlen), generator=generator)


def clone(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy that keeps tied weights tied."""
    return copy.deepcopy(model)
