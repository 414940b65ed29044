"""Tests for illusion_checks.power: each gated metric's minimum detectable effect on a real summary, and
the warning when an item count too small leaves a gate to noise."""

from __future__ import annotations

import pytest

from illusion_checks.gates import evaluate_gates
from illusion_checks.metrics import summarize
from illusion_checks.power import Power, gate_power, noise_warning
from illusion_checks.records import ResultsError
from illusion_checks.significance import items_needed, minimum_detectable_rate
from tests.helpers.rows import item, outcome


def _items(lang: str, n_both: int, n_other: int = 0, mc_only: int = 0) -> list[dict]:
    """n_both reference-both-correct items (the first `mc_only` of them MC-only after compression, the
    rest kept) and n_other items the reference gets wrong in FF."""
    both = [item(lang, f"{lang}-{k}", outcome(1, 1), outcome(0 if k < mc_only else 1, 1)) for k in range(n_both)]
    return both + [item(lang, f"{lang}-x{k}", outcome(0, 1), outcome(0, 1)) for k in range(n_other)]


def test_each_metric_counts_its_own_items() -> None:
    summary = summarize(_items("en", 20, n_other=10, mc_only=2), n_resamples=0)["per_language"]["en"]
    mde = minimum_detectable_rate(20, 0.05)
    assert gate_power("dissociation", summary, 0.15, 0.05) == Power(20, 30, 0.05, mde, 0.15, 52)
    retention = gate_power("retention", summary, 0.6, 0.05)
    assert (retention.n, retention.margin, retention.items_needed) == (20, pytest.approx(0.4), items_needed(0.4, 0.05))
    # ΔPR and the FF drop: the reference's FF-correct items (here the same 20), no margin for the FF drop.
    assert gate_power("delta_pr", summary, 0.1, 0.01) == Power(20, 30, 0.01, minimum_detectable_rate(20, 0.01), 0.1,
                                                               items_needed(0.1, 0.01))
    assert gate_power("ff_drop", summary, None, 0.05).margin is None
    assert gate_power("dissociation", None, 0.15, 0.05) is None


def test_a_gate_too_small_for_its_margin_warns_in_the_issue_form() -> None:
    summary = summarize(_items("en", 20, n_other=20) + _items("de", 4) + _items("sw", 300), n_resamples=0)
    gates = {(g.name, g.lang): g for g in evaluate_gates(summary, {"*": 0.15}, None, {"*": 0.6}, "point")}
    assert gates["dissociation", "en"].noise_warning() == (
        "en: 20 both-correct items cannot detect a dissociation below 0.37; the 0.15 gate is decided by noise; "
        "about 52 both-correct items would (about 104 items at this run's both-correct share)")
    assert gates["dissociation", "de"].noise_warning() == (
        "de: 4 both-correct items cannot detect a dissociation of any size (at alpha 0.05, McNemar needs at least "
        "6 of them to move); the 0.15 gate is decided by noise; about 52 both-correct items would (about 52 items "
        "at this run's both-correct share)")
    assert gates["dissociation", "sw"].noise_warning() is None  # 300 items resolve 0.15
    assert gates["dissociation", "overall"].noise_warning() is None
    # Retention's effect is the loss: the 0.6 gate allows 0.4, which 20 items resolve and 4 do not.
    assert gates["retention", "en"].noise_warning() is None
    assert gates["retention", "de"].noise_warning().startswith(
        "de: 4 both-correct items cannot detect a retention loss of any size")


def test_a_threshold_at_no_effect_is_always_noise_and_no_item_count_helps() -> None:
    summary = summarize(_items("en", 300), n_resamples=0)
    gate = evaluate_gates(summary, {"en": 0.0}, None, None, "point")[0]
    assert gate.power.items_needed is None and gate.power.decided_by_noise
    assert gate.noise_warning().endswith("the 0 gate is decided by noise; no item count can detect an effect "
                                         "within a margin of 0")
    assert noise_warning("dissociation", "en", 0.0, None) is None


def test_delta_pr_warns_with_the_most_favourable_case() -> None:
    summary = summarize(_items("en", 10), n_resamples=0)
    gate = evaluate_gates(summary, None, {"*": 0.2}, None, "point")[0]
    assert gate.noise_warning().startswith("en: 10 reference-FF-correct items cannot detect a ΔPR below 0.67 "
                                           "even in the most favourable case; the 0.2 gate is decided by noise")


def test_power_round_trips_and_a_malformed_one_names_the_field() -> None:
    power = Power(20, 30, 0.05, None, 0.15, 52)
    assert Power.from_dict(power.to_dict(), "gates[0]") == power
    with pytest.raises(ResultsError, match=r"^gates\[0\]: field 'power.n' must be a number, got 'x'"):
        Power.from_dict({**power.to_dict(), "n": "x"}, "gates[0]")
