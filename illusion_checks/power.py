"""What a gate's item count can resolve: each gated metric's minimum detectable effect (MDE) at the
gate's alpha and 80% power (`significance`), and the warning when it exceeds the gate's own margin.

The paired design of each metric (items independent, each with the same chance of moving):
- dissociation: the n both-correct items; an item dissociates (becomes MC-only) or not, and never the
  other way (the reference produced and recognized it). Exact.
- retention: the same n items; the effect is the retention loss, 1 - retention (an item no longer
  produced), again one way only. Exact.
- delta_pr and the FF drop (`--illusion-gate-on=mcnemar`): the n items the reference's FF gets right;
  the effect is d_hat.ff with MC unchanged and no item gained, the most favourable case, so the MDE
  is a lower bound (MC drops and FF gains only raise it). The overall ΔPR, a mean over languages, is
  read on the pooled count.

The margin is the effect the threshold allows: the threshold itself for dissociation and ΔPR (a
no-effect model scores 0), 1 - threshold for retention. A gate whose MDE exceeds its margin (or with
no MDE at all) is decided by noise: a model right at the threshold looks no different from a clean
one at this item count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from illusion_checks.records import ResultsError
from illusion_checks.significance import critical_count, items_needed, minimum_detectable_rate

BOTH, REF_FF = "both-correct items", "reference-FF-correct items"
UNITS = {"dissociation": BOTH, "retention": BOTH, "delta_pr": REF_FF, "ff_drop": REF_FF}
EFFECTS = {"dissociation": "a dissociation", "retention": "a retention loss", "delta_pr": "a ΔPR",
           "ff_drop": "an FF drop"}
_FIELDS = {"n": int, "n_items": int, "alpha": float, "mde": float, "margin": float, "items_needed": int}
_NULLABLE = ("mde", "margin", "items_needed")


@dataclass(frozen=True)
class Power:
    """A gate's MDE: `n` items of its unit (out of `n_items` evaluated), at level `alpha` and 80% power."""

    n: int
    n_items: int
    alpha: float
    mde: float | None  # the smallest effect n items detect with 80% power; None: no effect can be
    margin: float | None  # the effect the threshold allows; None for a gate without one (ff_drop)
    items_needed: int | None  # the fewest items of the unit whose MDE is within the margin

    @property
    def decided_by_noise(self) -> bool:
        """The gate has a margin and its MDE exceeds it (or there is no MDE at all)."""
        return self.margin is not None and (self.mde is None or self.mde > self.margin)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _FIELDS}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Power:
        """What `to_dict` wrote, or a ResultsError naming the field."""
        if not isinstance(data, Mapping):
            raise ResultsError(f"{where}: field 'power' must be an object or null")
        for key, kind in _FIELDS.items():
            value = data.get(key)
            number = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
            if isinstance(value, bool) or not (number or (value is None and key in _NULLABLE)):
                raise ResultsError(f"{where}: field 'power.{key}' must be a number, got {value!r}")
        return cls(**{key: data[key] for key in _FIELDS})


def gate_power(name: str, summary: Mapping[str, Any] | None, threshold: float | None, alpha: float) -> Power | None:
    """The MDE of gate `name` on one Summary block; None when the block has no items to count."""
    if summary is None or not summary.get("n_items"):
        return None
    n_items = int(summary["n_items"])
    if UNITS[name] == BOTH:
        n = summary.get("n_both_correct")
    else:
        ff = ((summary.get("acc") or {}).get("reference") or {}).get("ff")
        n = None if ff is None else round(ff * n_items)
    if n is None:
        return None
    margin = None if threshold is None else 1.0 - threshold if name == "retention" else threshold
    needed = None if margin is None else items_needed(margin, alpha)
    return Power(int(n), n_items, alpha, minimum_detectable_rate(int(n), alpha), margin, needed)


def noise_warning(name: str, lang: str, threshold: float, power: Power | None) -> str | None:
    """`en: 4 both-correct items cannot detect a dissociation below 0.62; the 0.15 gate is decided by
    noise; about 52 both-correct items would (...)`, or None when the item count resolves the gate."""
    if power is None or not power.decided_by_noise:
        return None
    unit, effect = UNITS[name], EFFECTS[name]
    if power.mde is None:
        reach = (f"cannot detect {effect} of any size (at alpha {power.alpha:g}, McNemar needs at least "
                 f"{critical_count(power.alpha)} of them to move)")
    else:
        reach = f"cannot detect {effect} below {power.mde:.2f}"
        reach += f" (a retention above {1 - power.mde:.2f})" if name == "retention" else ""
        reach += " even in the most favourable case" if unit == REF_FF else ""
    text = f"{lang}: {power.n} {unit} {reach}; the {threshold:g} gate is decided by noise"
    if power.items_needed is None:
        return f"{text}; no item count can detect an effect within a margin of {power.margin:g}"
    text += f"; about {power.items_needed} {unit} would"
    if power.n:
        share = "both-correct share" if unit == BOTH else "reference FF accuracy"
        text += f" (about {math.ceil(power.items_needed * power.n_items / power.n)} items at this run's {share})"
    return text
