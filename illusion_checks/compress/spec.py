"""Parse a compression spec string (`wanda:0.5`, `sparsegpt:2:4`, `rtn-int4`, ...) into a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRUNING_METHODS = ("magnitude", "wanda", "sparsegpt")
QUANT_METHODS = ("bnb-int8", "bnb-nf4", "rtn-int4", "quanto-int8", "quanto-int4")
CALIBRATED_METHODS = ("wanda", "sparsegpt")
# transformers cannot save_pretrained a quanto-quantized model (its quanto quantizer is not serializable).
UNSAVEABLE_METHODS = ("quanto-int8", "quanto-int4")

VALID_FORMS = (
    "magnitude:S, wanda:S, sparsegpt:S (unstructured sparsity S in [0, 1), e.g. wanda:0.5); "
    "magnitude:N:M, wanda:N:M, sparsegpt:N:M (N zeros in each group of M input weights, 1 <= N < M, "
    "e.g. wanda:2:4); bnb-int8; bnb-nf4; rtn-int4; quanto-int8; quanto-int4; "
    "llmc:PRESET (llm-compressor: gptq-w4a16, w8a8-int8, fp8-dynamic, sparsegpt-2:4, wanda:S, sparsegpt:S) "
    "or llmc:RECIPE.yaml (a llm-compressor recipe file)"
)
LLMC = "llmc"
# llm-compressor's presets (compress/llmc/recipes.py writes their recipes); wanda:S and sparsegpt:S
# take any budget the tool's own methods take (S or N:M).
LLMC_PRESETS = ("gptq-w4a16", "w8a8-int8", "fp8-dynamic", "sparsegpt-2:4")
LLMC_BUDGETED = ("wanda", "sparsegpt")
LLMC_DATA_FREE = ("fp8-dynamic",)  # dynamic activation scales, round-to-nearest weights: no calibration


@dataclass(frozen=True)
class CompressionSpec:
    """One compression recipe: a pruning method with its budget, or a quantization scheme."""

    method: str
    sparsity: float | None = None
    n: int | None = None
    m: int | None = None
    recipe: str | None = None  # llmc: a preset name, or the recipe file's path as given

    @property
    def is_llmc(self) -> bool:
        """True for llm-compressor recipes: `oneshot` compresses in its own process, from the reference's files."""
        return self.method == LLMC

    @property
    def recipe_file(self) -> str | None:
        """The llmc recipe's file path (None for a preset, or another method)."""
        return self.recipe if self.is_llmc and is_recipe_file(self.recipe or "") else None

    @property
    def is_pruning(self) -> bool:
        """True for magnitude, Wanda and SparseGPT."""
        return self.method in PRUNING_METHODS

    @property
    def is_structured(self) -> bool:
        """True for N:M pruning."""
        return self.n is not None

    @property
    def needs_calibration(self) -> bool:
        """True when compressing needs a calibration batch (Wanda, SparseGPT, llmc recipes but the data-free preset)."""
        if self.is_llmc:
            return self.recipe not in LLMC_DATA_FREE
        return self.method in CALIBRATED_METHODS and not self.is_noop

    @property
    def is_noop(self) -> bool:
        """True for unstructured pruning at sparsity 0, which leaves every weight as it is."""
        return self.is_pruning and not self.is_structured and self.sparsity == 0.0

    @property
    def is_saveable(self) -> bool:
        """False for quanto specs: their models live in memory only (no save_pretrained, so no vLLM)."""
        return self.method not in UNSAVEABLE_METHODS

    def __str__(self) -> str:
        if self.is_llmc:
            return f"{LLMC}:{self.recipe}"
        if self.is_structured:
            return f"{self.method}:{self.n}:{self.m}"
        if self.sparsity is not None:
            return f"{self.method}:{self.sparsity:g}"
        return self.method


def _invalid(text: str, why: str) -> ValueError:
    return ValueError(f"invalid compression spec {text!r}: {why}. Valid forms: {VALID_FORMS}")


def _parse_int(text: str, field: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _invalid(text, f"{field} must be an integer, but is {value!r}") from None


def parse_spec(text: str) -> CompressionSpec:
    """Parse `text` into a CompressionSpec; raise ValueError listing the valid forms on a bad one."""
    if not isinstance(text, str):
        raise _invalid(repr(text), f"the spec must be a string, but is {type(text).__name__}")
    clean = text.strip().lower()
    if clean.startswith(f"{LLMC}:"):
        return _parse_llmc(text, text.strip()[len(LLMC) + 1:].strip())
    if clean in QUANT_METHODS:
        return CompressionSpec(method=clean)
    method, _, budget = clean.partition(":")
    if method not in PRUNING_METHODS:
        raise _invalid(text, f"unknown method {method!r}")
    if not budget:
        raise _invalid(text, f"{method} needs a sparsity (S) or an N:M pattern")
    parts = budget.split(":")
    if len(parts) == 1:
        try:
            sparsity = float(parts[0])
        except ValueError:
            raise _invalid(text, f"sparsity must be a number, but is {parts[0]!r}") from None
        if not 0.0 <= sparsity < 1.0:  # also rejects nan
            raise _invalid(text, f"sparsity must lie in [0, 1), but is {parts[0]}")
        return CompressionSpec(method=method, sparsity=sparsity)
    if len(parts) == 2:
        n = _parse_int(text, "N", parts[0])
        m = _parse_int(text, "M", parts[1])
        if not 1 <= n < m:
            raise _invalid(text, f"N:M needs 1 <= N < M, but N is {n} and M is {m}")
        return CompressionSpec(method=method, n=n, m=m)
    raise _invalid(text, f"too many ':' fields in {budget!r}")


def is_recipe_file(recipe: str) -> bool:
    """Whether an llmc recipe names a file (a .yaml/.yml/.json path, or any path with a separator)."""
    return recipe.lower().endswith((".yaml", ".yml", ".json")) or "/" in recipe or "\\" in recipe


def _parse_llmc(text: str, recipe: str) -> CompressionSpec:
    """`llmc:PRESET` or `llmc:FILE`: the file's existence is checked here, its content by compress/llmc/recipes.py."""
    if not recipe:
        raise _invalid(text, "llmc needs a preset or a recipe file")
    if is_recipe_file(recipe):
        return CompressionSpec(method=LLMC, recipe=recipe)
    preset = recipe.lower()
    budgeted = preset.replace("-", ":", 1) if preset == "sparsegpt-2:4" else preset
    if preset in LLMC_PRESETS and budgeted == preset:
        return CompressionSpec(method=LLMC, recipe=preset)
    method, _, budget = budgeted.partition(":")
    if method in LLMC_BUDGETED and budget:
        try:
            inner = parse_spec(budgeted)  # the same budget forms as the tool's own method
        except ValueError as error:
            raise ValueError(str(error).replace(repr(budgeted), repr(text), 1)) from None
        name = preset if preset in LLMC_PRESETS else str(inner)
        return CompressionSpec(method=LLMC, recipe=name, sparsity=inner.sparsity, n=inner.n, m=inner.m)
    raise _invalid(text, f"unknown llmc preset {recipe!r} (presets: {', '.join(LLMC_PRESETS)}, wanda:S, "
                         "sparsegpt:S; or a .yaml recipe file)")


def read_recipe_file(spec_text: str, path: str) -> Any:
    """The parsed YAML of a recipe file; a ValueError naming the flag, file and reason when it is missing,
    unreadable, not YAML, or not a mapping of stages."""
    import yaml

    where = f"--illusion-compress={spec_text}: recipe file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{where} cannot be read ({error.strerror or error})") from None
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{where} is not valid YAML{at}: {getattr(error, 'problem', None) or error}") from None
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError(f"{where} is not a llm-compressor recipe (a mapping of stages to modifiers), "
                         f"but a {type(parsed).__name__}")
    return parsed
