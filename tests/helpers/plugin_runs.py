"""Helpers for the plugin's end-to-end tests: a crafted results file whose every outcome is known,
results written where pytester runs, JUnit outcomes, and conftest texts that count model loads and run a
user's own test on `illusion_results`."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from illusion_checks.metrics import item_fate, summarize
from tests.helpers.synth import make_results

SEED = 3


def crafted_results() -> dict[str, Any]:
    """en and sw, 8 items each: every reference-both-correct item is kept except one sw item,
    which the compressed model no longer produces nor reaches but still recognizes (mc_only)."""
    results = make_results(["en", "sw"], 8, seed=SEED, n_resamples=200, search_items=8, gates=False)
    both = [item for item in results["items"] if item["both_correct"]]
    for item in both:
        item["compressed"] = copy.deepcopy(item["reference"])
    demoted = next(item for item in both if item["lang"] == "sw")
    # The reference's answer begins with the gold, so its rank at the answer start is 1.
    demoted["reference"]["ff"].update(output=demoted["gold"], begins_with_gold=True)
    demoted["reference"]["gold_rank"] = 1
    outcome = demoted["compressed"]
    outcome["ff"] = {"correct": False, "output": "a confidently wrong answer", "f1": 0.0, "em": False}
    outcome["gold_rank"] = 4
    outcome["beam"]["reached"] = outcome["sample"]["reached"] = False
    for item in results["items"]:
        fate = item_fate(item)[1]
        item["fate"] = fate.value if fate is not None else None
    results["summary"] = summarize(results["items"], n_resamples=200, seed=SEED)
    assert results["summary"]["overall"]["fates"]["mc_only"] == 1
    return results


def n_both(results: dict[str, Any]) -> int:
    return results["summary"]["overall"]["n_both_correct"]


def mc_only_item(results: dict[str, Any]) -> dict[str, Any]:
    return next(item for item in results["items"] if item["fate"] == "mc_only")


def write_results(pytester: pytest.Pytester, results: dict[str, Any], name: str = "results.json") -> Path:
    path = pytester.path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def junit_outcomes(path: Path) -> list[tuple[str, str]]:
    """Sorted (test id, outcome) pairs from a JUnit XML file."""
    pairs = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else tag
        pairs.append((f"{case.get('classname')}::{case.get('name')}", outcome))
    return sorted(pairs)


USER_TEST = """
def test_my_own_check(illusion_results):
    assert illusion_results.summary["overall"]["n_items"] == {n_items}
    assert [item["id"] for item in illusion_results.items_with_fate("mc_only")] == [{mc_only!r}]
    assert illusion_results.fates("sw")["mc_only"] == 1
"""


# A conftest that counts model loads: each load appends a line `PID NAME` to loads.txt beside it.
LOAD_COUNTER = """
import os
import illusion_checks.backends.hf.load as models

_load_model = models.load_model


def _counting_load_model(name, *args, **kwargs):
    with open(os.path.join(os.path.dirname(__file__), "loads.txt"), "a") as handle:
        handle.write(f"{os.getpid()} {name}\\n")
    return _load_model(name, *args, **kwargs)


def pytest_configure(config):
    models.load_model = _counting_load_model


def pytest_unconfigure(config):
    models.load_model = _load_model
"""
