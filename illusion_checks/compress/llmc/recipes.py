"""The recipe an `llmc:` spec runs: a preset written here, or the user's file, read and checked.

A preset is fitted to the model before it runs: W4A16's group size is 128 unless a quantized layer's
input width is not a multiple of it (SmolLM2's 576), then the largest of 64, 32 and 16 that divides
every width (llm-compressor refuses a width its group size does not divide). The fitted text is what
runs, what the cache key hashes, and what `config.compressed.llmc.recipe` records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from illusion_checks.compress.spec import CompressionSpec

GROUP_SIZES = (128, 64, 32, 16)

_W4A16 = """\
default_stage:
  default_modifiers:
    GPTQModifier:
      ignore: [lm_head]
      config_groups:
        group_0:
          targets: [Linear]
          weights: {{num_bits: 4, type: int, symmetric: true, strategy: group, group_size: {group_size}}}
"""
_W8A8 = """\
default_stage:
  default_modifiers:
    SmoothQuantModifier:
      smoothing_strength: 0.8
    GPTQModifier:
      targets: [Linear]
      ignore: [lm_head]
      scheme: W8A8
"""
_FP8 = """\
default_stage:
  default_modifiers:
    QuantizationModifier:
      targets: [Linear]
      ignore: [lm_head]
      scheme: FP8_DYNAMIC
"""
# Pruning stays inside the decoder layers, as the tool's own does: embeddings and lm_head are dense.
# llm-compressor's pruning modifiers name each target Linear `lm_head.` (a trailing dot): a plain
# `lm_head` in `ignore` misses it and the tied embedding table is pruned too; `re:.*lm_head` does not.
_PRUNE = """\
default_stage:
  default_modifiers:
    {modifier}:
      sparsity: {sparsity}
      mask_structure: "{mask}"
      targets: [Linear]
      ignore: ["re:.*lm_head"]
"""
_PRUNERS = {"wanda": "WandaPruningModifier", "sparsegpt": "SparseGPTModifier"}


@dataclass(frozen=True)
class Recipe:
    """The recipe text that runs, where it came from (a preset name, or the file), and its digest."""

    text: str
    origin: str
    note: str | None = None  # how a preset was fitted to the model, when it was

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def describe(self, version: str) -> dict[str, Any]:
        """`config.compressed.llmc`: what ran, by what, fitted how."""
        return {"recipe": self.text, "origin": self.origin, "recipe_sha256": self.sha256,
                "llmcompressor": version, "fitted": self.note}


def recipe_for(spec: CompressionSpec, widths: dict[str, int]) -> Recipe:
    """The recipe `spec` runs on a model whose quantized layers read `widths` (compress/fit.model_widths)."""
    assert spec.is_llmc and spec.recipe is not None
    if spec.recipe_file:
        return Recipe(Path(spec.recipe_file).read_text(encoding="utf-8"), str(Path(spec.recipe_file).resolve()))
    origin = f"preset {spec.recipe}"
    if spec.recipe == "gptq-w4a16":
        size = next((g for g in GROUP_SIZES if all(w % g == 0 for w in widths.values())), None)
        if size is None:
            uneven = ", ".join(f"{name} {width}" for name, width in widths.items() if width % GROUP_SIZES[-1])
            raise ValueError(f"--illusion-compress={spec}: no W4A16 group size in {GROUP_SIZES} divides the model's "
                             f"layer widths ({uneven}); write a recipe that ignores those layers")
        note = None if size == GROUP_SIZES[0] else (
            f"group size {size}: the model's widths ({', '.join(map(str, sorted(set(widths.values()))))}) "
            f"are not all multiples of {GROUP_SIZES[0]}")
        return Recipe(_W4A16.format(group_size=size), origin, note)
    if spec.recipe == "w8a8-int8":
        return Recipe(_W8A8, origin)
    if spec.recipe == "fp8-dynamic":
        return Recipe(_FP8, origin)
    method = spec.recipe.split("-")[0].split(":")[0]
    mask = f"{spec.n}:{spec.m}" if spec.is_structured else "0:0"
    sparsity = spec.n / spec.m if spec.is_structured else spec.sparsity
    return Recipe(_PRUNE.format(modifier=_PRUNERS[method], sparsity=sparsity, mask=mask), origin)
