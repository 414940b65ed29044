"""`--illusion-compress=llmc:RECIPE`: the artifact users ship, made by llm-compressor's `oneshot`.

    recipe = plan("llmc:gptq-w4a16", folder)       # the recipe text that runs (a preset fitted to the model)
    check("llmc:gptq-w4a16", folder)               # llmcompressor's parser accepts it (before any model loads)
    identity("llmc:gptq-w4a16", folder)            # what the compressed model's fingerprint adds
    run_oneshot(folder, recipe.text, ids, "float32", out, manifest, log)   # the checkpoint, atomically

`oneshot` runs in worker.py under the Python that has llmcompressor (`ILLUSION_LLMC_PYTHON`, built by
`make llmc`), fed the tool's own calibration ids; the checkpoint is compressed-tensors, which the `hf`
backend loads dequantized on the CPU and vLLM loads natively.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from illusion_checks.compress.llmc.recipes import Recipe, recipe_for
from illusion_checks.compress.llmc.runner import check_recipe, llmc_python, llmc_version, run_oneshot
from illusion_checks.compress.spec import parse_spec, read_recipe_file

__all__ = ["Recipe", "check", "identity", "llmc_python", "llmc_version", "plan", "read_recipe_file", "run_oneshot"]


@lru_cache(maxsize=None)
def plan(spec_text: str, source: str, trust_remote_code: bool = False) -> Recipe:
    """The recipe `spec_text` runs on the model in folder `source` (its config read, no weights)."""
    from transformers import AutoConfig

    from illusion_checks.compress.fit import model_widths

    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    return recipe_for(parse_spec(spec_text), model_widths(config))


def check(spec_text: str, source: str, trust_remote_code: bool = False) -> None:
    """A usage error before any model loads: a recipe file that does not parse, a modifier llmcompressor
    does not have, a field a modifier refuses, or no llmcompressor to run it."""
    spec = parse_spec(spec_text)
    if spec.recipe_file:
        read_recipe_file(spec_text, spec.recipe_file)
    llmc_version()
    check_recipe(spec_text, plan(spec_text, source, trust_remote_code).text)


def identity(spec_text: str, source: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """`config.compressed.llmc` and what the fingerprint adds: the recipe that runs, its digest, the version."""
    return plan(spec_text, source, trust_remote_code).describe(llmc_version())
