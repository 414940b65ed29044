"""Release gates: threshold specs per language, and pass/fail records against a summary.

A threshold spec is a bare number (every language and `overall`), or `LANG=FLOAT` pairs where
`*` sets the default for every language and for `overall`; without `*` only the named keys
(languages, or `overall` itself) are gated. A language named in a spec but absent from the
results yields a failed gate naming the option and the languages the run has, so a typo ("swa"
for "sw") or a language dropped from `--illusion-langs` cannot silently pass.

`--illusion-gate-on=mcnemar` is another kind of gate: no threshold, one `ff_drop` gate per language
and overall, failing when the compressed model loses significantly more FF answers than it gains
(McNemar's exact test at `--illusion-alpha`). It applies to the FF drop only: a threshold on a rate
(dissociation, ΔPR, retention) is compared on `point` or `ci95`, so the two are refused together.
Every gate also carries its minimum detectable effect (`power.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from illusion_checks.options import flag
from illusion_checks.power import Power, gate_power, noise_warning
from illusion_checks.records import ResultsError
from illusion_checks.significance import DEFAULT_ALPHA, McNemar

EXPECTED_FORM = "expected FLOAT or LANG=FLOAT[,LANG=FLOAT...] with * for every language"
DEFAULT_KEY = "*"
OVERALL = "overall"
GATE_ON = ("point", "ci95", "mcnemar")
FF_DROP = "ff_drop"  # the gate of --illusion-gate-on=mcnemar
DISSOCIATION_BOUNDS = (0.0, 1.0)
RETENTION_BOUNDS = (0.0, 1.0)
DELTA_PR_BOUNDS = (-1.0, 1.0)

_LANG = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class _Metric:
    """Where a gated metric lives in a Summary and which way it must go."""

    name: str
    value_key: str
    ci_key: str
    direction: str  # "max": value <= threshold; "min": value >= threshold
    option: str  # the command-line option that sets its thresholds


METRICS = {
    "dissociation": _Metric("dissociation", "dissociation_rate", "dissociation_ci95", "max",
                            "--illusion-max-dissociation"),
    "delta_pr": _Metric("delta_pr", "delta_pr", "delta_pr_ci95", "max", "--illusion-max-delta-pr"),
    "retention": _Metric("retention", "retention", "retention_ci95", "min", "--illusion-min-retention"),
}


def _number(option_name: str, piece: str, raw: str, bounds: tuple[float, float]) -> float:
    """raw as a finite float within bounds, or a ValueError naming the option and the piece."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{option_name}: {piece!r} is not a number; {EXPECTED_FORM}") from None
    if not math.isfinite(value):
        raise ValueError(f"{option_name}: {piece!r} is not a finite number; {EXPECTED_FORM}")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise ValueError(f"{option_name}: {piece!r} is out of range; "
                         f"values must be within [{lo:g}, {hi:g}]")
    return value


def parse_thresholds(option_name: str, text: str,
                     bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, float]:
    """Parse `0.15`, `sw=0.2,*=0.15` or `en=0.1,ar=0.3` into {lang or '*': threshold}."""
    pieces = [p.strip() for p in text.split(",")]
    if pieces == [""]:
        raise ValueError(f"{option_name}: empty value; {EXPECTED_FORM}")
    if len(pieces) == 1 and "=" not in pieces[0]:
        return {DEFAULT_KEY: _number(option_name, pieces[0], pieces[0], bounds)}
    out: dict[str, float] = {}
    for piece in pieces:
        if not piece:
            raise ValueError(f"{option_name}: empty entry in {text!r}; {EXPECTED_FORM}")
        if "=" not in piece:
            raise ValueError(f"{option_name}: {piece!r} needs a language (a bare number must "
                             f"stand alone; write *={piece} for the default); {EXPECTED_FORM}")
        lang, raw = (part.strip() for part in piece.split("=", 1))
        if lang != DEFAULT_KEY and not _LANG.match(lang):
            raise ValueError(f"{option_name}: {lang!r} in {piece!r} is not a language code; "
                             f"{EXPECTED_FORM}")
        if lang in out:
            raise ValueError(f"{option_name}: language {lang!r} is given twice in {text!r}")
        out[lang] = _number(option_name, piece, raw, bounds)
    return out


def threshold_values(option_name: str, value: Any, bounds: tuple[float, float]) -> dict[str, float] | None:
    """A threshold spec from the command line's text (`parse_thresholds`) or a Python value (a number for
    every language, or {lang: number}), checked; a ValueError names the option."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_thresholds(option_name, value, bounds)
    pairs = value.items() if isinstance(value, Mapping) else [(DEFAULT_KEY, value)]
    out = {}
    for key, number in pairs:
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ValueError(f"{option_name}: {key}={number!r} is not a finite number")
        if not bounds[0] <= number <= bounds[1]:
            raise ValueError(f"{option_name}: {key}={number!r} is out of range; "
                             f"values must be within [{bounds[0]:g}, {bounds[1]:g}]")
        out[str(key)] = float(number)
    return out


def check_gate_on(gate_on: str, thresholds: Mapping[str, Any]) -> None:
    """`mcnemar` gates the FF drop and takes no threshold ({metric name: thresholds}): a ValueError naming
    both options otherwise."""
    given = [METRICS[name].option for name, spec in thresholds.items() if spec]
    if gate_on == "mcnemar" and given:
        raise ValueError(f"{flag('gate_on')}=mcnemar gates the FF drop (McNemar's exact test at {flag('alpha')}) "
                         f"and takes no threshold; {given[0]} is compared on point or ci95: drop one of them")


def threshold_for(thresholds: Mapping[str, float], key: str) -> float | None:
    """The threshold for a language (or `overall`): its own, else the `*` default, else none."""
    return thresholds.get(key, thresholds.get(DEFAULT_KEY))


def _fmt(x: float) -> str:
    """Three decimals, dropping one trailing zero (0.21, 0.30, 0.125)."""
    text = f"{x:.3f}"
    return text[:-1] if text.endswith("0") else text


@dataclass(frozen=True)
class Gate:
    """One metric for one language (or `overall`) checked against one threshold."""

    name: str
    lang: str
    value: float | None
    ci95: tuple[float, float] | None
    threshold: float
    direction: str
    gate_on: str
    compared: float | None
    passed: bool
    reason: str | None = None
    mcnemar: McNemar | None = None  # the test an ff_drop gate decides on
    power: Power | None = None  # what the item count can resolve (None: nothing to count)

    def to_dict(self) -> dict[str, Any]:
        """The Gate record of docs/results-schema.md (plus `reason`, null unless undefined)."""
        return {"name": self.name, "lang": self.lang, "value": self.value,
                "ci95": list(self.ci95) if self.ci95 is not None else None,
                "threshold": self.threshold, "direction": self.direction,
                "gate_on": self.gate_on, "compared": self.compared, "passed": self.passed,
                "reason": self.reason, "mcnemar": None if self.mcnemar is None else self.mcnemar.to_dict(),
                "power": None if self.power is None else self.power.to_dict()}

    def noise_warning(self) -> str | None:
        """`en: 4 both-correct items cannot detect a dissociation below ...; the 0.15 gate is decided by
        noise; ...` when the gate's minimum detectable effect exceeds its margin, else None."""
        return None if self.mcnemar is not None else noise_warning(self.name, self.lang, self.threshold, self.power)

    @classmethod
    def from_dict(cls, data: Any, where: str = "gate") -> Gate:
        """The Gate that `to_dict` wrote; `reason` may be absent (read as null), as older writers left it
        out, and other keys are ignored. A ResultsError names `where` and the field on malformed input."""
        if not isinstance(data, Mapping):
            raise ResultsError(f"{where}: expected an object")
        for key, kind in _GATE_FIELDS.items():
            if key not in data:
                if key == "reason":
                    continue
                raise ResultsError(f"{where}: missing field '{key}'")
            value = data[key]
            if not (value is None and key in _NULLABLE) and not _is_kind(value, kind):
                raise ResultsError(f"{where}: field '{key}' must be {_KIND_NOUNS[kind]}"
                                   f"{' or null' if key in _NULLABLE else ''}, got {value!r}")
        for key, allowed in (("direction", ("max", "min")), ("gate_on", GATE_ON)):
            if data[key] not in allowed:
                raise ResultsError(f"{where}: field '{key}' must be one of {', '.join(allowed)}, got {data[key]!r}")
        ci = data["ci95"]
        return cls(**{key: data[key] for key in _GATE_FIELDS if key in data and key != "ci95"},
                   ci95=None if ci is None else (ci[0], ci[1]), mcnemar=_mcnemar(data.get("mcnemar"), where),
                   power=None if data.get("power") is None else Power.from_dict(data["power"], where))

    def describe(self) -> str:
        """One line for the terminal, e.g. `dissociation[sw] = 0.21 (95% CI 0.12-0.30) > ...`."""
        verdict = "PASS" if self.passed else "FAIL"
        head = f"{self.name}[{self.lang}]"
        if self.mcnemar is not None:
            test, alpha = self.mcnemar, self.threshold
            shown = "n/a" if self.value is None else _fmt(self.value)
            side = "<=" if test.p_value <= alpha else ">"
            gain = ", a gain" if test.p_value <= alpha and test.drops <= test.gains else ""
            return (f"{head} = {shown} (drops {test.drops}, gains {test.gains}; McNemar p = {test.p_value:.3g}) "
                    f"{side} alpha {alpha:g}{gain} on mcnemar: {verdict}")
        bound = f"{self.direction} {_fmt(self.threshold)} on {self.gate_on}"
        if self.value is None or self.compared is None:
            shown = "n/a" if self.value is None else _fmt(self.value)
            return f"{head} = {shown}, needs {bound}: {verdict} ({self.reason})"
        ci = ""
        if self.ci95 is not None:
            lo, hi = self.ci95
            sep = " to " if lo < 0 or hi < 0 else "-"
            ci = f" (95% CI {_fmt(lo)}{sep}{_fmt(hi)})"
        ops = {("max", True): "<=", ("max", False): ">", ("min", True): ">=", ("min", False): "<"}
        op = ops[(self.direction, self.passed)]
        return f"{head} = {_fmt(self.value)}{ci} {op} {bound}: {verdict}"


_GATE_FIELDS = {"name": str, "lang": str, "value": float, "ci95": tuple, "threshold": float, "direction": str,
                "gate_on": str, "compared": float, "passed": bool, "reason": str}
_NULLABLE = {"value", "ci95", "compared", "reason"}
_KIND_NOUNS = {str: "a string", float: "a number", tuple: "a [low, high] pair of numbers", bool: "true or false"}


def _mcnemar(data: Any, where: str) -> McNemar | None:
    """An ff_drop gate's test as `to_dict` wrote it (null for the other gates), or a ResultsError."""
    if data is None:
        return None
    try:
        return McNemar(int(data["drops"]), int(data["gains"]), float(data["p_value"]))
    except (KeyError, TypeError, ValueError):
        raise ResultsError(f"{where}: field 'mcnemar' must be null or {{drops, gains, p_value}}, got {data!r}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_kind(value: Any, kind: type) -> bool:
    """Whether a Gate field's JSON value is of its kind (numbers: int or float, never bool)."""
    if kind is float:
        return _is_number(value)
    if kind is tuple:
        return isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
    return isinstance(value, kind)


def _undefined_reason(metric: _Metric, lang: str, summary: Mapping[str, Any] | None,
                      run_langs: list[str]) -> str:
    """Why a metric has no value for this language, in the user's terms."""
    if summary is None:
        return (f"{metric.option} names {lang!r}, but the results hold no items in {lang!r}; "
                f"languages in this run: {', '.join(run_langs) or 'none'}")
    if not summary.get("n_items"):
        return (f"no items in {lang!r}: the results hold no items for it, "
                f"so {metric.name} is undefined")
    if metric.name == "delta_pr":
        if lang == OVERALL:
            return ("no language has a defined delta_pr (each needs reference FF and MC "
                    "accuracy above 0), so the overall mean is undefined")
        acc = summary.get("acc", {}).get("reference", {})
        for probe in ("ff", "mc"):
            if not acc.get(probe):
                return (f"the reference model's {probe.upper()} accuracy in {lang!r} is 0, "
                        f"so d_hat.{probe} and delta_pr are undefined")
        return f"delta_pr is undefined in {lang!r}"
    return (f"no reference-both-correct items in {lang!r}: the reference model answers none "
            f"of them in both FF and MC, so {metric.name} is undefined")


def _gate(metric: _Metric, lang: str, summary: Mapping[str, Any] | None, threshold: float,
          gate_on: str, run_langs: list[str], alpha: float) -> Gate:
    """Evaluate one metric for one language against its threshold."""
    value = summary.get(metric.value_key) if summary is not None else None
    raw_ci = summary.get(metric.ci_key) if summary is not None else None
    ci = (float(raw_ci[0]), float(raw_ci[1])) if raw_ci is not None else None
    power = gate_power(metric.name, summary, threshold, alpha) if value is not None else None
    common = dict(name=metric.name, lang=lang, value=value, ci95=ci, threshold=threshold,
                  direction=metric.direction, gate_on=gate_on, power=power)
    if value is None:
        return Gate(**common, compared=None, passed=False,
                    reason=_undefined_reason(metric, lang, summary, run_langs))
    if gate_on == "point":
        compared = value
    elif ci is None:
        return Gate(**common, compared=None, passed=False,
                    reason=f"no bootstrap interval for {metric.name} in {lang!r} "
                           f"(n_resamples is 0 or every resample was undefined), "
                           f"so the ci95 gate cannot be checked")
    else:
        # The conservative end: the worst value the interval still allows.
        compared = ci[1] if metric.direction == "max" else ci[0]
    passed = compared <= threshold if metric.direction == "max" else compared >= threshold
    return Gate(**common, compared=compared, passed=passed)


def _gated_keys(per_language: Mapping[str, Any], thresholds: Mapping[str, float]) -> list[str]:
    """Languages present or named in the spec (sorted), then `overall`."""
    named = {k for k in thresholds if k not in (DEFAULT_KEY, OVERALL)}
    return [*sorted(set(per_language) | named), OVERALL]


def _ff_drop(lang: str, summary: Mapping[str, Any], alpha: float) -> Gate:
    """The mcnemar gate of one language (or overall): fails on a significant FF drop at level alpha."""
    acc = summary.get("acc", {})
    ref, comp = acc.get("reference", {}).get("ff"), acc.get("compressed", {}).get("ff")
    common = dict(name=FF_DROP, lang=lang, value=None if ref is None or comp is None else ref - comp, ci95=None,
                  threshold=alpha, direction="min", gate_on="mcnemar", power=gate_power(FF_DROP, summary, None, alpha))
    block = (summary.get("mcnemar") or {}).get("ff")
    if block is None:
        return Gate(**common, compared=None, passed=False,
                    reason=f"the summary of {lang!r} holds no McNemar test (results written before it existed)")
    test = McNemar(block["drops"], block["gains"], block["p_value"])
    return Gate(**common, compared=test.p_value, passed=not test.significant_drop(alpha), mcnemar=test)


def evaluate_gates(summary: Mapping[str, Any], max_dissociation: Mapping[str, float] | None,
                   max_delta_pr: Mapping[str, float] | None,
                   min_retention: Mapping[str, float] | None, gate_on: str,
                   alpha: float = DEFAULT_ALPHA) -> list[Gate]:
    """Gate records for every (metric, language or overall) that has a threshold; under `mcnemar`, an
    ff_drop gate for every language and overall instead (and no threshold)."""
    if gate_on not in GATE_ON:
        raise ValueError(f"gate_on must be one of {', '.join(GATE_ON)}, but is {gate_on!r}")
    per_language = summary.get("per_language", {})
    specs = (("dissociation", max_dissociation), ("delta_pr", max_delta_pr),
             ("retention", min_retention))
    check_gate_on(gate_on, dict(specs))
    if gate_on == "mcnemar":
        return [_ff_drop(key, summary[OVERALL] if key == OVERALL else per_language[key], alpha)
                for key in [*sorted(per_language), OVERALL]]
    gates: list[Gate] = []
    for name, thresholds in specs:
        if not thresholds:
            continue
        for key in _gated_keys(per_language, thresholds):
            threshold = threshold_for(thresholds, key)
            if threshold is None:
                continue
            stats = summary.get(OVERALL) if key == OVERALL else per_language.get(key)
            gates.append(_gate(METRICS[name], key, stats, threshold, gate_on, sorted(per_language), alpha))
    return gates
