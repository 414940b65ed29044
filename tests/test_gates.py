"""Tests for illusion_checks.gates: threshold parsing, point vs ci95 verdicts, undefined metrics."""

from __future__ import annotations

import json

import pytest

from illusion_checks.gates import (
    DELTA_PR_BOUNDS,
    Gate,
    evaluate_gates,
    parse_thresholds,
    threshold_for,
)
from illusion_checks.metrics import summarize

OPT = "--illusion-max-dissociation"


# --- parse_thresholds --------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("0.15", {"*": 0.15}),
    (" 0.15 ", {"*": 0.15}),
    ("sw=0.2,*=0.15", {"sw": 0.2, "*": 0.15}),
    ("en=0.1, ar = 0.3", {"en": 0.1, "ar": 0.3}),
    ("overall=0.2", {"overall": 0.2}),
    ("zh-Hans=0,pt_BR=1", {"zh-Hans": 0.0, "pt_BR": 1.0}),
])
def test_parse_valid(text: str, expected: dict[str, float]) -> None:
    assert parse_thresholds(OPT, text) == expected


@pytest.mark.parametrize("text,fragment", [
    ("sw=abc", "'sw=abc' is not a number"),
    ("abc", "'abc' is not a number"),
    ("", "empty value"),
    ("en=0.1,,ar=0.2", "empty entry"),
    ("0.1,sw=0.2", "'0.1' needs a language"),
    ("=0.2", "'' in '=0.2' is not a language code"),
    ("s w=0.2", "'s w' in 's w=0.2' is not a language code"),
    ("sw=0.1,sw=0.2", "language 'sw' is given twice"),
    ("sw=1.5", "'sw=1.5' is out of range; values must be within [0, 1]"),
    ("-0.1", "'-0.1' is out of range"),
    ("nan", "not a finite number"),
    ("sw=", "'sw=' is not a number"),
])
def test_parse_invalid_names_option_value_and_form(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_thresholds(OPT, text)
    message = str(err.value)
    assert message.startswith(f"{OPT}: ")
    assert fragment in message
    if "range" not in message and "twice" not in message:
        assert "expected FLOAT or LANG=FLOAT[,LANG=FLOAT...] with * for every language" in message


def test_parse_exact_message() -> None:
    with pytest.raises(ValueError) as err:
        parse_thresholds(OPT, "sw=abc")
    assert str(err.value) == (
        "--illusion-max-dissociation: 'sw=abc' is not a number; expected FLOAT or "
        "LANG=FLOAT[,LANG=FLOAT...] with * for every language")


def test_parse_delta_pr_bounds_allow_negative() -> None:
    assert parse_thresholds("--illusion-max-delta-pr", "-0.5", DELTA_PR_BOUNDS) == {"*": -0.5}
    with pytest.raises(ValueError, match=r"within \[-1, 1\]"):
        parse_thresholds("--illusion-max-delta-pr", "en=-1.5", DELTA_PR_BOUNDS)


def test_threshold_lookup() -> None:
    spec = {"sw": 0.2, "*": 0.15}
    assert threshold_for(spec, "sw") == 0.2
    assert threshold_for(spec, "en") == 0.15
    assert threshold_for(spec, "overall") == 0.15
    assert threshold_for({"en": 0.1}, "overall") is None


# --- evaluate_gates ----------------------------------------------------------------------

def lang_summary(diss: float | None, diss_ci: list[float] | None, ret: float | None,
                 ret_ci: list[float] | None, dpr: float | None, dpr_ci: list[float] | None,
                 n_both: int = 20, ref_ff: float = 0.5, ref_mc: float = 0.6) -> dict:
    """Just the Summary fields the gates read."""
    return {"n_items": 40, "n_both_correct": n_both,
            "dissociation_rate": diss, "dissociation_ci95": diss_ci,
            "retention": ret, "retention_ci95": ret_ci,
            "delta_pr": dpr, "delta_pr_ci95": dpr_ci,
            "acc": {"reference": {"ff": ref_ff, "mc": ref_mc}}}


def make_summary() -> dict:
    """en is comfortably healthy; sw passes on the point estimate but not on its interval."""
    return {
        "per_language": {
            "sw": lang_summary(0.12, [0.05, 0.21], 0.80, [0.70, 0.90], 0.10, [-0.05, 0.25]),
            "en": lang_summary(0.05, [0.01, 0.09], 0.95, [0.90, 0.99], 0.02, [-0.01, 0.05]),
        },
        "overall": lang_summary(0.085, [0.04, 0.13], 0.875, [0.80, 0.93], 0.06, [0.0, 0.12]),
    }


def by_key(gates: list[Gate]) -> dict[tuple[str, str], Gate]:
    """Gates indexed by (name, lang)."""
    return {(g.name, g.lang): g for g in gates}


def test_point_and_ci95_give_different_verdicts() -> None:
    summary = make_summary()
    spec = parse_thresholds(OPT, "0.15")
    point = by_key(evaluate_gates(summary, spec, None, None, "point"))
    ci = by_key(evaluate_gates(summary, spec, None, None, "ci95"))
    assert point["dissociation", "sw"].passed
    assert point["dissociation", "sw"].compared == 0.12
    assert not ci["dissociation", "sw"].passed
    assert ci["dissociation", "sw"].compared == 0.21  # upper end for a max gate
    assert ci["dissociation", "en"].passed and ci["dissociation", "overall"].passed


def test_min_gate_uses_lower_end() -> None:
    spec = {"*": 0.75}
    point = by_key(evaluate_gates(make_summary(), None, None, spec, "point"))
    ci = by_key(evaluate_gates(make_summary(), None, None, spec, "ci95"))
    assert point["retention", "sw"].passed and point["retention", "sw"].direction == "min"
    assert ci["retention", "sw"].compared == 0.70
    assert not ci["retention", "sw"].passed
    assert ci["retention", "en"].passed


def test_gate_boundary_is_inclusive() -> None:
    gates = by_key(evaluate_gates(make_summary(), {"sw": 0.12}, None, {"en": 0.95}, "point"))
    assert gates["dissociation", "sw"].passed
    assert gates["retention", "en"].passed


def test_one_gate_per_metric_and_language_in_order() -> None:
    spec = {"*": 0.5}
    gates = evaluate_gates(make_summary(), spec, {"*": 0.2}, spec, "point")
    assert [(g.name, g.lang) for g in gates] == [
        ("dissociation", "en"), ("dissociation", "sw"), ("dissociation", "overall"),
        ("delta_pr", "en"), ("delta_pr", "sw"), ("delta_pr", "overall"),
        ("retention", "en"), ("retention", "sw"), ("retention", "overall"),
    ]


def test_spec_without_default_gates_only_named_languages() -> None:
    gates = evaluate_gates(make_summary(), {"sw": 0.2}, None, None, "point")
    assert [(g.name, g.lang) for g in gates] == [("dissociation", "sw")]
    assert evaluate_gates(make_summary(), None, None, None, "ci95") == []


def test_language_override_beats_default() -> None:
    gates = by_key(evaluate_gates(make_summary(), {"sw": 0.1, "*": 0.15}, None, None, "point"))
    assert gates["dissociation", "sw"].threshold == 0.1
    assert not gates["dissociation", "sw"].passed
    assert gates["dissociation", "en"].threshold == 0.15


def test_named_language_missing_from_results_fails_naming_option_and_languages() -> None:
    gates = by_key(evaluate_gates(make_summary(), {"swa": 0.2}, None, {"xx": 0.5}, "point"))
    gate = gates["dissociation", "swa"]
    assert not gate.passed and gate.value is None
    assert gate.reason == ("--illusion-max-dissociation names 'swa', but the results hold no items in 'swa'; "
                           "languages in this run: en, sw")
    assert gates["retention", "xx"].reason.startswith("--illusion-min-retention names 'xx'")


def test_undefined_dissociation_fails_with_reason() -> None:
    summary = make_summary()
    summary["per_language"]["sw"] = lang_summary(None, None, None, None, 0.1, [0.0, 0.2],
                                                 n_both=0)
    gates = by_key(evaluate_gates(summary, {"*": 0.15}, None, {"*": 0.5}, "point"))
    for name in ("dissociation", "retention"):
        gate = gates[name, "sw"]
        assert gate.value is None and gate.compared is None and not gate.passed
        assert gate.reason.startswith("no reference-both-correct items in 'sw'")
        assert f"so {name} is undefined" in gate.reason
        assert gate.to_dict()["value"] is None
    assert gates["dissociation", "en"].reason is None


def test_undefined_delta_pr_fails_with_reason() -> None:
    summary = make_summary()
    summary["per_language"]["sw"] = lang_summary(0.1, [0.0, 0.2], 0.9, [0.8, 1.0], None, None,
                                                 ref_ff=0.0)
    summary["overall"]["delta_pr"] = None
    summary["overall"]["delta_pr_ci95"] = None
    gates = by_key(evaluate_gates(summary, None, {"*": 0.2}, None, "ci95"))
    assert "FF accuracy in 'sw' is 0" in gates["delta_pr", "sw"].reason
    assert "no language has a defined delta_pr" in gates["delta_pr", "overall"].reason
    assert not gates["delta_pr", "sw"].passed


def test_missing_interval_fails_only_under_ci95() -> None:
    summary = make_summary()
    summary["per_language"]["en"]["dissociation_ci95"] = None
    assert by_key(evaluate_gates(summary, {"en": 0.15}, None, None, "point"))[
        "dissociation", "en"].passed
    gate = by_key(evaluate_gates(summary, {"en": 0.15}, None, None, "ci95"))["dissociation", "en"]
    assert not gate.passed and gate.value == 0.05 and gate.compared is None
    assert "no bootstrap interval" in gate.reason


def test_bad_gate_on() -> None:
    with pytest.raises(ValueError, match="gate_on must be one of point, ci95, mcnemar, but is 'mean'"):
        evaluate_gates(make_summary(), {"*": 0.1}, None, None, "mean")


# --- records and descriptions ------------------------------------------------------------

def test_to_dict_matches_schema() -> None:
    gate = by_key(evaluate_gates(make_summary(), {"*": 0.15}, None, None, "ci95"))[
        "dissociation", "sw"]
    assert gate.to_dict() == {"name": "dissociation", "lang": "sw", "value": 0.12,
                              "ci95": [0.05, 0.21], "threshold": 0.15, "direction": "max",
                              "gate_on": "ci95", "compared": 0.21, "passed": False,
                              "reason": None, "mcnemar": None,
                              "power": {"n": 20, "n_items": 40, "alpha": 0.05,
                                        "mde": pytest.approx(0.3665, abs=1e-4), "margin": 0.15,
                                        "items_needed": 52}}
    json.dumps(gate.to_dict())
    assert Gate.from_dict(json.loads(json.dumps(gate.to_dict()))) == gate


def test_describe() -> None:
    summary = make_summary()
    summary["per_language"]["sw"]["dissociation_rate"] = 0.21
    summary["per_language"]["sw"]["dissociation_ci95"] = [0.12, 0.30]
    ci = by_key(evaluate_gates(summary, {"*": 0.15}, {"*": 0.2}, {"*": 0.75}, "ci95"))
    assert ci["dissociation", "sw"].describe() == (
        "dissociation[sw] = 0.21 (95% CI 0.12-0.30) > max 0.15 on ci95: FAIL")
    assert ci["dissociation", "en"].describe() == (
        "dissociation[en] = 0.05 (95% CI 0.01-0.09) <= max 0.15 on ci95: PASS")
    assert ci["retention", "sw"].describe() == (
        "retention[sw] = 0.80 (95% CI 0.70-0.90) < min 0.75 on ci95: FAIL")
    assert ci["delta_pr", "en"].describe() == (
        "delta_pr[en] = 0.02 (95% CI -0.01 to 0.05) <= max 0.20 on ci95: PASS")


def test_describe_undefined() -> None:
    summary = make_summary()
    summary["per_language"]["sw"] = lang_summary(None, None, None, None, 0.1, [0.0, 0.2],
                                                 n_both=0)
    line = by_key(evaluate_gates(summary, {"*": 0.15}, None, None, "point"))[
        "dissociation", "sw"].describe()
    assert line.startswith("dissociation[sw] = n/a, needs max 0.15 on point: FAIL (no reference")


def test_gates_on_a_real_summary() -> None:
    def outcome(ff: bool, mc: bool) -> dict:
        out = {p: {"correct": False} for p in ("cs", "one_shot", "zero_shot_short")}
        return {**out, "ff": {"correct": ff}, "mc": {"correct": mc}, "gold_rank": 1,
                "beam": None, "sample": None}

    # 'sw': 10 both-correct, 3 become mc_only; 'en': nothing both-correct.
    items = [{"id": str(i), "lang": "sw", "reference": outcome(True, True),
              "compressed": outcome(i >= 3, True)} for i in range(10)]
    items += [{"id": "e", "lang": "en", "reference": outcome(False, False),
               "compressed": outcome(False, False)}]
    summary = summarize(items, n_resamples=200)
    gates = by_key(evaluate_gates(summary, {"*": 0.35}, None, None, "point"))
    assert gates["dissociation", "sw"].value == pytest.approx(0.3)
    assert gates["dissociation", "sw"].passed
    assert not gates["dissociation", "en"].passed and gates["dissociation", "en"].reason
    assert gates["dissociation", "overall"].passed
    ci_gate = by_key(evaluate_gates(summary, {"*": 0.35}, None, None, "ci95"))[
        "dissociation", "sw"]
    assert ci_gate.compared > 0.35 and not ci_gate.passed


# --- --illusion-gate-on=mcnemar: the FF drop --------------------------------------------------------

def _ff_pairs(lang: str, drops: int, gains: int, both_right: int = 5) -> list[dict]:
    """Items whose FF answer the compressed model loses (`drops`), wins (`gains`) or keeps; MC always right."""
    from tests.helpers.rows import item, outcome

    flips = [(1, 0)] * drops + [(0, 1)] * gains + [(1, 1)] * both_right
    return [item(lang, f"{lang}-{k}", outcome(ref, 1), outcome(comp, 1)) for k, (ref, comp) in enumerate(flips)]


def test_a_significant_ff_drop_fails_under_mcnemar_and_an_insignificant_one_passes() -> None:
    # en: 9 lost, 1 gained: p = 22/1024 = 0.0215; de: 3 lost, 1 gained: p = 0.625; ar: 1 lost, 9 gained.
    summary = summarize(_ff_pairs("en", 9, 1) + _ff_pairs("de", 3, 1) + _ff_pairs("ar", 1, 9), n_resamples=0)
    gates = by_key(evaluate_gates(summary, None, None, None, "mcnemar"))
    assert sorted(gates) == [("ff_drop", lang) for lang in ("ar", "de", "en", "overall")]
    en, de, ar = gates["ff_drop", "en"], gates["ff_drop", "de"], gates["ff_drop", "ar"]
    assert not en.passed and en.compared == 22 / 1024 and (en.mcnemar.drops, en.mcnemar.gains) == (9, 1)
    assert en.threshold == 0.05 and en.gate_on == "mcnemar" and en.value == pytest.approx(8 / 15)
    assert en.describe() == ("ff_drop[en] = 0.533 (drops 9, gains 1; McNemar p = 0.0215) <= alpha 0.05 "
                             "on mcnemar: FAIL")
    assert de.passed and de.describe().endswith("(drops 3, gains 1; McNemar p = 0.625) > alpha 0.05 on mcnemar: PASS")
    assert ar.passed and ar.describe().endswith("<= alpha 0.05, a gain on mcnemar: PASS")  # significant, but a gain
    assert gates["ff_drop", "overall"].mcnemar.drops == 13 and gates["ff_drop", "overall"].passed  # 13 vs 11
    assert en.noise_warning() is None and en.power.margin is None
    # A stricter alpha lets en pass; the record survives its JSON.
    strict = by_key(evaluate_gates(summary, None, None, None, "mcnemar", alpha=0.01))["ff_drop", "en"]
    assert strict.passed and strict.threshold == 0.01
    assert Gate.from_dict(json.loads(json.dumps(en.to_dict()))) == en


def test_mcnemar_takes_no_threshold_and_alpha_is_checked() -> None:
    from illusion_checks.spec import GateSpec

    with pytest.raises(ValueError) as caught:
        GateSpec(gate_on="mcnemar", min_retention=0.5)
    assert str(caught.value).startswith("--illusion-gate-on=mcnemar gates the FF drop (McNemar's exact test at "
                                        "--illusion-alpha) and takes no threshold; --illusion-min-retention")
    with pytest.raises(ValueError, match="--illusion-max-dissociation is compared on point or ci95"):
        evaluate_gates(make_summary(), {"*": 0.1}, None, None, "mcnemar")
    assert GateSpec(gate_on="mcnemar", alpha="0.01").alpha == 0.01
    for bad in (0, 1, 1.5, "x", "nan", True, None):
        with pytest.raises(ValueError, match=r"^--illusion-alpha: .* is not a significance level"):
            GateSpec(alpha=bad)


def test_a_summary_without_mcnemar_fails_the_mcnemar_gate_with_a_reason() -> None:
    gate = by_key(evaluate_gates(make_summary(), None, None, None, "mcnemar"))["ff_drop", "sw"]
    assert not gate.passed and "holds no McNemar test" in gate.reason
