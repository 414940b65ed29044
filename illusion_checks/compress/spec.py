"""Parse a compression spec string (`wanda:0.5`, `sparsegpt:2:4`, `rtn-int4`, ...) into a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

PRUNING_METHODS = ("magnitude", "wanda", "sparsegpt")
QUANT_METHODS = ("bnb-int8", "bnb-nf4", "rtn-int4")
CALIBRATED_METHODS = ("wanda", "sparsegpt")

VALID_FORMS = (
    "magnitude:S, wanda:S, sparsegpt:S (unstructured sparsity S in [0, 1), e.g. wanda:0.5); "
    "magnitude:N:M, wanda:N:M, sparsegpt:N:M (N zeros in each group of M input weights, 1 <= N < M, "
    "e.g. wanda:2:4); bnb-int8; bnb-nf4; rtn-int4"
)


@dataclass(frozen=True)
class CompressionSpec:
    """One compression recipe: a pruning method with its budget, or a quantization scheme."""

    method: str
    sparsity: float | None = None
    n: int | None = None
    m: int | None = None

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
        """True when compress_model needs a calibration batch (Wanda, SparseGPT)."""
        return self.method in CALIBRATED_METHODS and not self.is_noop

    @property
    def is_noop(self) -> bool:
        """True for unstructured pruning at sparsity 0, which leaves every weight as it is."""
        return self.is_pruning and not self.is_structured and self.sparsity == 0.0

    def __str__(self) -> str:
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
