"""Tests for illusion_checks.spec_steps (and its results v2 field): each spec against the next less
compressed one of its method, McNemar per language and overall on items paired by id."""

from __future__ import annotations

import copy

from illusion_checks.results import multi_results, steps_of, validate_multi
from illusion_checks.significance import mcnemar_p
from illusion_checks.spec_steps import compression_level, less_compressed, spec_steps
from tests.helpers.rows import item, outcome
from tests.helpers.synth import make_results


def test_the_next_less_compressed_spec_is_the_same_methods_highest_sparsity_below() -> None:
    labels = ["wanda:0.5", "wanda:0.3", "rtn-int4", "wanda:0.7", "sparsegpt:0.5", "wanda:2:4", "llmc:wanda:0.6",
              "llmc:wanda:0.4", "my/prebuilt-model", "magnitude:0.3"]
    assert less_compressed(labels) == {0: 1, 3: 0, 6: 7}
    assert compression_level("llmc:wanda:0.6") == ("llmc:wanda", 0.6)
    assert compression_level("llmc:gptq-w4a16") is None and compression_level("sparsegpt:2:4") is None


def _run(spec: str, ff: dict[tuple[str, str], bool]) -> dict:
    """A run whose compressed FF answers are `ff` (MC always right); the reference's do not enter a step."""
    items = [item(lang, item_id, outcome(1, 1), outcome(correct, 1)) for (lang, item_id), correct in ff.items()]
    return {"config": {"compressed": {"name": f"m+{spec}", "spec": spec}}, "items": items}


def test_a_step_pairs_items_by_id_and_counts_drops_and_gains_per_language_and_overall() -> None:
    before = {("en", f"e{k}"): k < 8 for k in range(10)} | {("de", f"d{k}"): True for k in range(4)}
    after = {("en", f"e{k}"): k in (0, 9) for k in range(10)} | {("de", f"d{k}"): k != 0 for k in range(4)}
    after[("de", "only-here")] = False  # an item the less compressed run lacks is not paired
    runs = [_run("wanda:0.7", dict(reversed(list(after.items())))), _run("wanda:0.5", before), _run("rtn-int4", before)]
    [step] = spec_steps(runs, ["wanda:0.7", "wanda:0.5", "rtn-int4"])
    assert (step["spec"], step["against"]) == ("wanda:0.7", "wanda:0.5")
    # en: e1..e7 lost (7), e9 gained (1); de: d0 lost.
    assert step["per_language"]["en"] == {"n": 10, "ff": {"drops": 7, "gains": 1, "p_value": mcnemar_p(7, 1)},
                                          "mc": {"drops": 0, "gains": 0, "p_value": 1.0}}
    assert step["per_language"]["de"]["ff"] == {"drops": 1, "gains": 0, "p_value": 1.0}
    assert step["overall"]["n"] == 14 and step["overall"]["ff"] == {"drops": 8, "gains": 1,
                                                                  "p_value": mcnemar_p(8, 1)}


def test_sweep_results_carry_their_steps_and_older_files_get_them_recomputed() -> None:
    runs = [make_results(("en", "sw"), 20, n_resamples=0, spec=spec, severity=severity, gates=False)
            for spec, severity in (("wanda:0.3", 0.3), ("wanda:0.6", 1.5), ("rtn-int4", 0.5))]
    results = multi_results(runs)
    assert [(s["spec"], s["against"]) for s in results["steps"]] == [("wanda:0.6", "wanda:0.3")]
    assert results["steps"][0]["overall"]["n"] == 40 and validate_multi(results, "sweep.json") == []
    older = copy.deepcopy(results)
    del older["steps"]
    assert steps_of(older) == results["steps"] and steps_of(runs[0]) == []
