"""Quantize the decoder Linears: torch-only group-wise RTN int4, bitsandbytes int8 / NF4, or quanto int8 / int4.

bitsandbytes on the CPU (checked with bitsandbytes 0.50.2, torch 2.13.0+cpu, transformers 5.23,
an x86-64 Xeon with AVX-512 incl. BF16/VNNI): `pip install bitsandbytes` brings a wheel with a
CPU backend, and both specs run through transformers' BitsAndBytesConfig with no GPU.
- bnb-int8 (LLM.int8, threshold 6.0): works; bitsandbytes casts fp32 activations to fp16 for
  the int8 matmul and warns "MatMul8bitLt: inputs will be cast from torch.float32 to float16".
- bnb-nf4: works; it logs "Failed to load CPU gemm_4bit_forward from kernels-community: No
  module named 'kernels'" and falls back to its built-in kernel (the optional `kernels` package
  only adds a faster one). On AVX512-BF16 CPUs, Linear4bit repacks its weights for the CPU on
  the first inference forward, and saving afterwards unpacks them with slightly rounded scales:
  save a bnb model (save_compressed) before running it.

optimum-quanto on the CPU (checked with optimum-quanto 0.2.7, torch 2.13.0+cpu, transformers 5.25,
SmolLM2-135M in fp32): both specs run through transformers' QuantoConfig, weights only (transformers
refuses quanto's activation quantization), with no warning logged.
- quanto-int8: per-output-channel symmetric int8 (absmax); relative logit change on SmolLM2 ~0.04.
- quanto-int4: group-wise asymmetric int4 (min/max; 128 input columns per group, or the largest
  multiple of 32 that divides the width: 96 for SmolLM2's 576); relative logit change ~0.4, like
  rtn-int4. Its first forward builds quanto's C++ unpack extension with torch's cpp_extension
  (g++ and ninja; 30-70 s on 2 cores, once per install, into site-packages); without a compiler
  it fails with "Error building extension 'quanto_cpp'".
- Held-out perplexity (tests/compress/test_slow_smollm2.py's 30 passages): dense 49.4, quanto-int8
  49.4, quanto-int4 105 (rtn-int4 81, bnb-nf4 80, bnb-int8 50.6).
- Speed: on the CPU an fp32 forward dequantizes the weights before each matmul (only bf16 int8
  has a weight-int8 kernel), so quanto saves memory, not time: a 128-token forward is as fast as
  dense, greedy decoding ~1.2-2x (int8) and ~2-4x (int4) slower, and compressing (save, reload,
  quantize) takes 1-2 s for SmolLM2.
- Neither can be saved: transformers' quanto quantizer is not serializable, and save_pretrained
  raises "The model is quantized with quanto and is not serializable", so EvaluationSpec.check()
  refuses them with --illusion-save-compressed or --illusion-backend=vllm.
All keep lm_head (tied to the embeddings) and the embeddings dense, as pruning does.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from torch import nn

from .catcher import decoder_layers
from .prune import Progress, layer_linears
from .spec import CompressionSpec

RTN_BITS = 4
RTN_GROUP_SIZE = 128
# quanto specs: the weight type transformers' QuantoConfig takes.
QUANTO_WEIGHTS = {"quanto-int8": "int8", "quanto-int4": "int4"}


@torch.no_grad()
def rtn_quantize(weight: torch.Tensor, bits: int = RTN_BITS, group_size: int = RTN_GROUP_SIZE) -> torch.Tensor:
    """Round-to-nearest asymmetric quantization per group of `group_size` input columns; returns dequantized fp32.

    A last group narrower than `group_size` (in_features not a multiple of it) gets its own scale.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, but is {group_size}")
    W = weight.detach().float()
    rows, columns = W.shape
    maxq = 2**bits - 1
    out = torch.empty_like(W)
    for start in range(0, columns, group_size):
        group = W[:, start : start + group_size]
        # Widen the range to include 0 so that zero weights (e.g. pruned ones) stay exactly zero.
        low = group.min(dim=1, keepdim=True).values.clamp(max=0)
        high = group.max(dim=1, keepdim=True).values.clamp(min=0)
        scale = (high - low) / maxq
        scale[scale == 0] = 1.0  # an all-zero group: any scale reproduces it
        zero = torch.round(-low / scale)
        q = torch.clamp(torch.round(group / scale) + zero, 0, maxq)
        out[:, start : start + group_size] = (q - zero) * scale
    return out


@torch.no_grad()
def rtn_model(model: nn.Module, device: torch.device, progress: Progress | None = None) -> None:
    """Replace every decoder Linear weight by its RTN int4 (group 128) dequantization, in place.

    Weights stay in the model's dtype ("fake" quantization, as in GPTQ's RTN baseline): the
    model computes exactly what int4 kernels would, and saves as a plain checkpoint.
    """
    layers = decoder_layers(model)
    for i, layer in enumerate(layers):
        for linear in layer_linears(layer).values():
            weight = linear.weight
            weight.copy_(rtn_quantize(weight.to(device)).to(weight.device, weight.dtype))
        if progress is not None:
            progress(i + 1, len(layers))


def _bnb_config(spec: CompressionSpec, compute_dtype: torch.dtype):
    from transformers import BitsAndBytesConfig

    # Only the decoder Linears are quantized, as with pruning: lm_head (often tied) stays dense.
    if spec.method == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=["lm_head"],
    )


def _require_bitsandbytes(spec: CompressionSpec) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise RuntimeError(
            f"{spec} needs bitsandbytes: pip install 'bitsandbytes>=0.45' (CPU wheels run on x86-64 too) ({err})"
        ) from err


@torch.no_grad()
def bnb_model(model: nn.Module, spec: CompressionSpec, device: torch.device) -> nn.Module:
    """A new model: `model` saved and reloaded through transformers' BitsAndBytesConfig on `device`.

    The reload is what transformers supports for quantizing (and later saving) a checkpoint;
    the input model is left untouched.
    """
    _require_bitsandbytes(spec)
    return _reload_quantized(model, _bnb_config(spec, next(model.parameters()).dtype), device)


def _require_quanto(spec: CompressionSpec) -> None:
    try:
        import optimum.quanto  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"{spec} needs optimum-quanto: pip install 'optimum-quanto>=0.2.7' ({err})") from err


@torch.no_grad()
def quanto_model(model: nn.Module, spec: CompressionSpec, device: torch.device) -> nn.Module:
    """A new model: `model` saved and reloaded through transformers' QuantoConfig (weights only) on `device`.

    The decoder Linears become quanto QLinear modules with int8 or int4 weights; activations stay
    in the model's dtype. The input model is left untouched.
    """
    _require_quanto(spec)
    from transformers import QuantoConfig

    # Only the decoder Linears are quantized, as with pruning: lm_head (often tied) stays dense.
    config = QuantoConfig(weights=QUANTO_WEIGHTS[spec.method], modules_to_not_convert=["lm_head"])
    return _reload_quantized(model, config, device)


def _reload_quantized(model: nn.Module, quantization_config: Any, device: torch.device) -> nn.Module:
    """`model` saved to a temporary folder and loaded back through `quantization_config`, in eval mode."""
    from transformers import AutoModelForCausalLM

    dtype = next(model.parameters()).dtype
    with tempfile.TemporaryDirectory(prefix="illusion-quantize-") as tmp:
        model.save_pretrained(tmp)
        quantized = AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=quantization_config, device_map={"": str(device)}, dtype=dtype
        )
    quantized.eval()
    return quantized
