"""A sweep's paired steps: each spec against the next less compressed one, by McNemar's exact test.

"Less compressed" needs one scale, and unstructured pruning of one method has it: `wanda:0.3` is less
compressed than `wanda:0.5` (likewise `llmc:wanda:0.3` than `llmc:wanda:0.5`), so a step compares a
spec with the spec of the same method whose sparsity is the highest below its own. A spec without such
a level (a quantization scheme, an N:M pattern, a recipe, a prebuilt model) or without a lower one has
no step; its run's own summary still compares it with the reference (`summary.*.mcnemar`).

Items are paired by (language, id); a step counts, per language and overall, the FF and MC answers
the spec got wrong where the less compressed one got them right (`drops`) and the reverse (`gains`).
Pure functions of the runs (schema v1 objects), engine-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from illusion_checks.compress.spec import LLMC, parse_spec
from illusion_checks.records import COMPRESSED, CORRECT, FF, ID, LANG, MC
from illusion_checks.significance import McNemar

OVERALL = "overall"
PROBES = (FF, MC)


def compression_level(label: str) -> tuple[str, float] | None:
    """(method, sparsity) of an unstructured pruning spec (`llmc:wanda` for `llmc:wanda:0.5`); None otherwise."""
    try:
        spec = parse_spec(label)
    except ValueError:  # a prebuilt model's name
        return None
    if spec.sparsity is None or spec.is_structured:
        return None
    method = f"{LLMC}:{(spec.recipe or '').partition(':')[0]}" if spec.is_llmc else spec.method
    return method, spec.sparsity


def less_compressed(labels: Sequence[str]) -> dict[int, int]:
    """{index of a spec: index of the spec it steps from}: the same method's highest sparsity below its own."""
    levels = [compression_level(label) for label in labels]
    steps = {}
    for i, level in enumerate(levels):
        below = [(other[1], j) for j, other in enumerate(levels)
                 if level is not None and other is not None and other[0] == level[0] and other[1] < level[1]]
        if below:
            steps[i] = max(below)[1]
    return steps


def _correct(item: Mapping[str, Any], probe: str) -> bool:
    return bool(item[COMPRESSED][probe][CORRECT])


def _block(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """{n, ff, mc}: the paired items and each probe's McNemar test (before, after)."""
    return {"n": len(pairs), **{probe: McNemar.of((_correct(before, probe), _correct(after, probe))
                                                  for before, after in pairs).to_dict() for probe in PROBES}}


def step(before: Mapping[str, Any], after: Mapping[str, Any], labels: tuple[str, str]) -> dict[str, Any]:
    """One step: run `after` against run `before` (their specs: `labels`), on the items both hold, per
    language and overall."""
    earlier = {(item[LANG], item[ID]): item for item in before["items"]}
    pairs = sorted(((key, earlier[key], item) for item in after["items"]
                    if (key := (item[LANG], item[ID])) in earlier), key=lambda pair: pair[0])
    langs = sorted({key[0] for key, _, _ in pairs})
    return {"spec": labels[1], "against": labels[0],
            "per_language": {lang: _block([(b, a) for key, b, a in pairs if key[0] == lang]) for lang in langs},
            OVERALL: _block([(b, a) for _, b, a in pairs])}


def spec_steps(runs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Every step among these runs (their specs: `labels`), in the runs' order."""
    return [step(runs[j], runs[i], (labels[j], labels[i])) for i, j in sorted(less_compressed(labels).items())]
