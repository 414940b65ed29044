"""One real gate run on an embedded model: smollm2-135m against its magnitude-pruned copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from illusion_checks.metrics import recompute_check
from illusion_checks.results import validate


@pytest.mark.slow
def test_gate_on_the_embedded_model_writes_results_report_and_item_tests(tmp_path):
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rx", "-v",
               "--illusion-model=smollm2-135m", "--illusion-compress=magnitude:0.5",
               "--illusion-langs=en,de", "--illusion-items=4", "--illusion-no-reachability",
               "--illusion-max-dissociation=1.0", f"--illusion-cache-dir={tmp_path / 'cache'}",
               "--junitxml=junit.xml"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "reports" / "illusion-results.json").read_text())
    assert validate(results) == [] and recompute_check(results) == []
    assert results["config"]["reference"]["name"] == "smollm2-135m"
    assert {i["lang"] for i in results["items"]} == {"en", "de"} and len(results["items"]) == 8
    both = [i for i in results["items"] if i["both_correct"]]
    assert both, "smollm2-135m should both produce and recognize some English fixture answers"
    for item in results["items"]:
        for check in ("produces", "recognizes", "reaches"):
            listed = f"illusion/{item['lang']}/{item['id']}::{check}" in done.stdout
            assert listed == item["both_correct"], (item["id"], check)
    assert "illusion/overall::dissociation PASSED" in done.stdout
    html = (tmp_path / "reports" / "illusion-report.html").read_text()
    assert "smollm2-135m" in html and "<script type=\"application/json\"" in html

    # The same results under a gate the recorded value does not meet: exit 1, no second evaluation.
    overall = results["summary"]["overall"]
    if overall["dissociation_rate"] > 0:
        gate, threshold = "--illusion-max-dissociation", overall["dissociation_rate"] / 2
        verdict = "FAIL dissociation[overall] = "
    else:  # nothing demoted to MC-only: ask for more retention than there is
        assert overall["retention"] < 1, "magnitude:0.5 should cost smollm2-135m some both-correct item"
        gate, threshold = "--illusion-min-retention", (overall["retention"] + 1) / 2
        verdict = "FAIL retention[overall] = "
    regate = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--illusion-item-policy=off",
              "--illusion-from-results=reports/illusion-results.json", f"{gate}={threshold:.4f}",
              "--illusion-json=regated.json", "--illusion-report=regated.html"]
    again = subprocess.run(regate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1, again.stdout[-3000:] + again.stderr[-3000:]
    assert verdict in again.stdout and "models loaded: 0" in again.stdout
    regated = json.loads((tmp_path / "regated.json").read_text())
    assert regated["items"] == results["items"]
    assert [g["passed"] for g in regated["gates"] if g["lang"] == "overall"] == [False]
