"""The A/A noise floor (`--illusion-noise-floor`): how far the reference's fates move against itself.

The reference is probed a second time on the same engine, at another batch size and with the items
in reverse order, and the second run is read as if it were a compressed copy of the first: every
both-correct item whose fate is not `kept` moved with no compression at all. On the CPU in float32
the count is 0 (batch-size invariance, README "Speed"); on a GPU, or in vLLM under load, batched
inference is not bitwise deterministic and the count is what it is. A dissociation no larger than
the floor is indistinguishable from that noise.

The block (`noise_floor` in the results): `changed` of `n` both-correct items moved, `rate` =
changed / n (null when n is 0), `outputs_changed` of `items` items changed a greedy FF output, an MC
choice or a gold rank (a finer reading: most such changes move no fate), the second run's
`batch_size` and `order`, and the same counts `per_language`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from illusion_checks.fates import Fate
from illusion_checks.records import ItemRecord

ORDER = "reversed"
_COUNTS = ("changed", "n", "outputs_changed", "items")


def other_batch_size(batch_size: int) -> int:
    """The A/A run's batch size: half the first run's (2 when that is 1), so rows group differently."""
    return batch_size // 2 or 2


def noise_floor(pairs: Sequence[ItemRecord], batch_size: int, order: str = ORDER) -> dict[str, Any]:
    """The block from items paired as (first reference run, second reference run)."""
    per_language: dict[str, dict[str, int]] = {}
    for item in pairs:
        block = per_language.setdefault(item.lang, dict.fromkeys(_COUNTS, 0))
        a, b = item.reference, item.compressed
        block["items"] += 1
        block["outputs_changed"] += (a.ff.output != b.ff.output or a.mc.choice != b.mc.choice
                                     or a.gold_rank != b.gold_rank)
        if item.both_correct:
            block["n"] += 1
            block["changed"] += item.fate != Fate.KEPT
    overall = {key: sum(block[key] for block in per_language.values()) for key in _COUNTS}
    return {**_with_rate(overall), "batch_size": batch_size, "order": order,
            "per_language": {lang: _with_rate(block) for lang, block in sorted(per_language.items())}}


def _with_rate(block: Mapping[str, int]) -> dict[str, Any]:
    return {**block, "rate": block["changed"] / block["n"] if block["n"] else None}


def check(block: Any, where: str = "noise_floor") -> list[str]:
    """Every way a stored block departs from what `noise_floor` writes (empty when it conforms)."""
    if not isinstance(block, Mapping):
        return [f"{where}: must be an object"]
    errors = [f"{where}: field '{key}' must be a count >= 0" for key in _COUNTS
              if isinstance(block.get(key), bool) or not isinstance(block.get(key), int) or block[key] < 0]
    if not errors and block["changed"] > block["n"]:
        errors.append(f"{where}: field 'changed' ({block['changed']}) exceeds 'n' ({block['n']})")
    if "per_language" in block:
        langs = block["per_language"]
        if not isinstance(langs, Mapping):
            return errors + [f"{where}: field 'per_language' must be an object"]
        for lang, sub in langs.items():
            errors += check({**sub, "per_language": {}} if isinstance(sub, Mapping) else sub,
                            f"{where}.per_language.{lang}")
    return errors


def describe(block: Mapping[str, Any] | None) -> str | None:
    """`noise floor (A/A: the reference again at batch size 8, items reversed): 0 of 17 both-correct
    items changed fate; 1 of 30 items changed an output`, or None when the run has no floor."""
    if not block:
        return None
    return (f"noise floor (A/A: the reference again at batch size {block['batch_size']}, items {block['order']}): "
            f"{block['changed']} of {block['n']} both-correct items changed fate; "
            f"{block['outputs_changed']} of {block['items']} items changed an FF output, MC choice or gold rank")
