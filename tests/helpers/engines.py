"""What the engine agreement tests share (tests/test_vllm.py, tests/test_served.py): the one spec they
all probe (a model against its wanda:0.5 copy, en and ru, 6 items each: 24 outcomes, so a rate of
0.95 allows one disagreement), the rate at which two runs agree, and the pairs of outcomes to compare."""

from __future__ import annotations

from typing import Any

import pytest

from illusion_checks import EvaluationSpec

LANGS, ITEMS = ("en", "ru"), 6
# The real-engine tests run first (`make test`; tests/conftest.py); those that share the session's
# `hf_smollm2_run` (and the servers) are one group, which one pytest worker runs whole.
ENGINE_FILES = ("tests/test_served.py", "tests/test_vllm.py", "tests/test_llmc.py")
ENGINES = "engines"
SHARING = ("tests/test_served.py::", "tests/test_vllm.py::test_hf_and_vllm_backends_agree_on_the_same_items[smollm2")
CALIBRATION = dict(calibration="embedded", calibration_samples=8, calibration_seqlen=128)


def agreement_spec(model: str, backend: str = "hf", **overrides: Any) -> EvaluationSpec:
    """`model` against its wanda:0.5 copy through `backend`, on the items every agreement test uses."""
    values = dict(model=model, compress="wanda:0.5", backend=backend, langs=LANGS, items=ITEMS, **CALIBRATION,
                  device="cpu", dtype="float32", no_reachability=True, no_cache=True)
    return EvaluationSpec(**{**values, **overrides})


def rate(pairs: list[tuple[Any, Any]]) -> float:
    """The share of pairs whose two sides are equal."""
    return sum(a == b for a, b in pairs) / len(pairs)


def paired_outcomes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(a's outcome, b's outcome) for each item and role, after checking both runs probed the same items."""
    assert [i["id"] for i in a["items"]] == [i["id"] for i in b["items"]]
    return [(x[role], y[role]) for x, y in zip(a["items"], b["items"]) for role in ("reference", "compressed")]


def reached_rates(results: dict[str, Any]) -> dict[str, float]:
    """The share of outcomes (both roles) whose beam search, and whose samples, reached the gold."""
    outcomes = [item[role] for item in results["items"] for role in ("reference", "compressed")]
    return {probe: sum(o[probe]["reached"] for o in outcomes) / len(outcomes) for probe in ("beam", "sample")}


def assert_reached_rates_agree(hf: dict[str, Any], other: dict[str, Any]) -> None:
    """Beam search and seeded sampling reach the gold about as often through `other`'s engine as
    through HF on the same items: at most one outcome apart (the engines draw samples from their own
    seeded generators, and their beam searches may part on a near-tie), over at least 4 outcomes."""
    assert [i["id"] for i in hf["items"]] == [i["id"] for i in other["items"]]
    n = 2 * len(hf["items"])
    ours, theirs = reached_rates(hf), reached_rates(other)
    print(f"reached rates over {n} outcomes: hf {ours}, other {theirs}")
    assert n >= 4 and all(abs(ours[p] - theirs[p]) <= 1 / n + 1e-9 for p in ours), (ours, theirs)


def approx_gold_token(block: dict[str, Any] | None, tolerance: float = 1e-3) -> Any:
    """A `gold_token` block to compare with ==: every field exact but each path margin, which
    batching and kernels move by float round-off."""
    if block is None or "path" not in block:
        return block
    return {**block, "path": [{**step, "margin": pytest.approx(step["margin"], abs=tolerance)} for step in block["path"]]}
