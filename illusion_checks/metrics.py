"""Summary metrics over probed items: fates, dissociation, ΔPR, recovery, ranks, McNemar tests, bootstrap CIs.

Every function here is pure and deterministic: the same items (and seed) give the same summary,
whose values are plain ints/floats/None/lists ready for JSON. The field meanings are the
"Summary" table of docs/results-schema.md.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from illusion_checks.fates import FATE_ORDER, Fate, gold_cut
from illusion_checks.ranks import answer_start, median_ranks, rank_boundary, rank_facts
from illusion_checks.records import (ABSENT, BEAM, BOTH_CORRECT, COMPRESSED, CORRECT, CS, FATE, FF, ID, LANG, MC,
                                     MODELS, ONE_SHOT, REACHED, REFERENCE, SAMPLE, TRUNCATION, ZERO_SHOT_SHORT, Absent,
                                     LanguageSummary)
from illusion_checks.significance import McNemar

# Item and outcome keys come from illusion_checks.records; the Summary is records.LanguageSummary.
ACC_PROBES = (FF, CS, MC, ONE_SHOT, ZERO_SHOT_SHORT)
OPTIONAL_PROBES = (ONE_SHOT,)  # null on an item where the probe could not run (no exemplar)
SEARCH_PROBES = (BEAM, SAMPLE)
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 42
FLOAT_TOLERANCE = 1e-9

Row = dict[str, Any]

# An item's four bits (ref FF, ref MC, compressed FF, compressed MC) decide its fate and every
# bootstrapped statistic, so a resample is just a histogram over these 16 codes.
_REF_FF, _REF_MC, _COMP_FF, _COMP_MC = 8, 4, 2, 1
_GOLD_CUT = 16  # an FF prompt lost the gold span to truncation: no fate code, so never both-correct
_BOTH = _REF_FF | _REF_MC
_FATE_CODE = {
    Fate.KEPT: _BOTH | _COMP_FF | _COMP_MC,
    Fate.MC_ONLY: _BOTH | _COMP_MC,
    Fate.PRODUCED_ONLY: _BOTH | _COMP_FF,
    Fate.LOST: _BOTH,
}


def item_fate(item: Mapping[str, Any]) -> tuple[bool, Fate | None]:
    """(both_correct, fate) of one item, from the reference's and compressed model's FF/MC."""
    row = _row(item)
    return row["both"], row["fate"]


def _flag(outcome: Mapping[str, Any], probe: str, where: str) -> bool:
    """outcome[probe]["correct"] as a bool, or a ValueError naming the item and the field."""
    try:
        return bool(outcome[probe][CORRECT])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"item {where}: missing or malformed field '{probe}.{CORRECT}'") from exc


def _search(outcome: Mapping[str, Any], probe: str, where: str) -> bool | None:
    """Whether beam/sample reached the gold; None when that probe did not run on the item."""
    block = outcome.get(probe)
    if block is None:
        return None
    if not isinstance(block, Mapping) or REACHED not in block:
        raise ValueError(f"item {where}: field '{probe}' must be null or have '{REACHED}'")
    return bool(block[REACHED])


def _outcome(outcome: Any, where: str) -> Row:
    """The per-model facts one item contributes to a summary."""
    if not isinstance(outcome, Mapping):
        raise ValueError(f"item {where}: outcome must be an object, got {type(outcome).__name__}")
    row: Row = {probe: None if probe in OPTIONAL_PROBES and outcome.get(probe, False) is None
                else _flag(outcome, probe, where) for probe in ACC_PROBES}
    for probe in SEARCH_PROBES:
        row[probe] = _search(outcome, probe, where)
    truncation = outcome.get(TRUNCATION)
    row[TRUNCATION] = truncation if isinstance(truncation, Mapping) else None
    return {**row, **rank_facts(outcome)}


def _where(item: Mapping[str, Any]) -> str:
    """`lang/id` of an item, for messages."""
    return f"{item.get(LANG, '?')}/{item.get(ID, '?')}"


def _row(item: Mapping[str, Any]) -> Row:
    """Both models' facts for one item, plus its both-correct flag, fate and bootstrap code."""
    where = _where(item)
    try:
        ref, comp = item[REFERENCE], item[COMPRESSED]
    except KeyError as exc:
        raise ValueError(f"item {where}: missing field {exc}") from exc
    row: Row = {REFERENCE: _outcome(ref, where), COMPRESSED: _outcome(comp, where)}
    r, c = row[REFERENCE], row[COMPRESSED]
    cut = gold_cut(r[TRUNCATION]) or gold_cut(c[TRUNCATION])
    row["both"] = r[FF] and r[MC] and not cut
    row["fate"] = Fate.of(c[FF], c[MC]) if row["both"] else None
    row["code"] = (_REF_FF * r[FF] + _REF_MC * r[MC]
                   + _COMP_FF * c[FF] + _COMP_MC * c[MC] + _GOLD_CUT * cut)
    return row


def _ratio(num: float, den: float) -> float | None:
    """num / den, or None when the denominator is 0 (the metric is undefined)."""
    return num / den if den else None


def _drop(ref_hits: int, comp_hits: int) -> float | None:
    """Headroom-normalised drop (acc_ref - acc_comp) / acc_ref, from counts on the same items."""
    return _ratio(ref_hits - comp_hits, ref_hits)


def _code_rates(hist: Mapping[int, int]) -> tuple[float | None, float | None, float | None]:
    """(dissociation, retention, delta_pr) from a histogram of item codes."""
    n_both = sum(hist.get(code, 0) for code in _FATE_CODE.values())
    kept = hist.get(_FATE_CODE[Fate.KEPT], 0)
    produced = hist.get(_FATE_CODE[Fate.PRODUCED_ONLY], 0)
    dissociation = _ratio(hist.get(_FATE_CODE[Fate.MC_ONLY], 0), n_both)
    retention = _ratio(kept + produced, n_both)
    hits = [0, 0, 0, 0]
    for code, count in hist.items():
        for i, bit in enumerate((_REF_FF, _COMP_FF, _REF_MC, _COMP_MC)):
            if code & bit:
                hits[i] += count
    d_ff, d_mc = _drop(hits[0], hits[1]), _drop(hits[2], hits[3])
    delta = None if d_ff is None or d_mc is None else d_ff - d_mc
    return dissociation, retention, delta


def _mean_defined(values: Sequence[float | None]) -> float | None:
    """Mean over the defined values; None when none is defined."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def _accuracy(rows: Sequence[Row], model: str) -> dict[str, float | None]:
    """Accuracy per probe; beam/sample count greedy-or-search hits over items where they ran."""
    acc: dict[str, float | None] = {}
    for probe in ACC_PROBES:
        ran = [r[model][probe] for r in rows if r[model][probe] is not None]
        acc[probe] = _ratio(sum(ran), len(ran))
    for probe in SEARCH_PROBES:
        ran = [r[model] for r in rows if r[model][probe] is not None]
        # Oracle reachability (paper 3.4) is an upper bound on greedy: reached if greedy FF
        # already is correct or any searched sequence contains the gold.
        acc[probe] = _ratio(sum(o[FF] or o[probe] for o in ran), len(ran))
    return acc


def _recovery(rows: Sequence[Row], model: str) -> dict[str, Any]:
    """Among the model's greedy FF failures that had search probes, the share beam/sample reach."""
    failures = [r[model] for r in rows if not r[model][FF]]
    searched = [o for o in failures if any(o[p] is not None for p in SEARCH_PROBES)]
    out: dict[str, Any] = {"n_failures": len(searched)}
    for probe in SEARCH_PROBES:
        ran = [o[probe] for o in failures if o[probe] is not None]
        out[probe] = _ratio(sum(ran), len(ran))
    return out


def _point_summary(rows: Sequence[Row]) -> LanguageSummary:
    """Every Summary field except the confidence intervals (filled in by the bootstrap)."""
    fates = {fate.value: sum(r["fate"] is fate for r in rows) for fate in FATE_ORDER}
    n_both = sum(fates.values())
    hits = {m: {p: sum(r[m][p] for r in rows) for p in (FF, CS, MC)} for m in MODELS}
    d_hat = {p: _drop(hits[REFERENCE][p], hits[COMPRESSED][p]) for p in (FF, CS, MC)}
    acc = {m: _accuracy(rows, m) for m in MODELS}
    gaps = {}
    for name, probe in (("zero_shot", ZERO_SHOT_SHORT), ("one_shot", ONE_SHOT)):
        ref, comp = acc[REFERENCE][probe], acc[COMPRESSED][probe]
        gaps[name] = None if ref is None or comp is None else ref - comp
    starts, rank_interpretable = answer_start(rows)
    return LanguageSummary(
        n_items=len(rows),
        n_both_correct=n_both,
        fates=fates,
        dissociation_rate=_ratio(fates[Fate.MC_ONLY.value], n_both),
        dissociation_ci95=None,
        retention=_ratio(fates[Fate.KEPT.value] + fates[Fate.PRODUCED_ONLY.value], n_both),
        retention_ci95=None,
        acc=acc,
        d_hat=d_hat,
        delta_pr=(None if d_hat[FF] is None or d_hat[MC] is None
                  else d_hat[FF] - d_hat[MC]),
        delta_pr_ci95=None,
        recovery={m: _recovery(rows, m) for m in MODELS},
        median_gold_rank=median_ranks(rows),
        answer_start=starts,
        rank_interpretable=rank_interpretable,
        rank_boundary=rank_boundary(rows),
        prune_gap=gaps,
        truncation=_truncation(rows),
        # Exact McNemar on every item's pair (reference, compressed): the paired test of each accuracy.
        mcnemar={p: McNemar.of((r[REFERENCE][p], r[COMPRESSED][p]) for r in rows).to_dict() for p in (FF, MC)},
    )


def _truncation(rows: Sequence[Row]) -> dict[str, Any] | Absent:
    """Per model: the share of items whose passage each prompt kind cut, how many lost the gold span
    from the FF prompt (never both-correct), and how many CS prompts had to cut FF's passage further.
    Absent when no outcome records truncation (files written before it was)."""
    if not any(r[m][TRUNCATION] is not None for r in rows for m in MODELS):
        return ABSENT
    out: dict[str, Any] = {}
    for model in MODELS:
        records = [r[model][TRUNCATION] or {} for r in rows]
        block: dict[str, Any] = {}
        for kind in (FF, CS, ONE_SHOT, ZERO_SHOT_SHORT):
            ran = [record[kind] for record in records if isinstance(record.get(kind), Mapping)]
            block[kind] = _ratio(sum(bool(k.get("cut")) for k in ran), len(ran))
        block["gold_cut"] = sum(gold_cut(record) for record in records)
        block["cs_passage_differs"] = sum((record.get(CS) or {}).get("same_as_ff") is False for record in records)
        out[model] = block
    return out


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of an already sorted sequence."""
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _interval(values: list[float]) -> list[float] | None:
    """[2.5, 97.5] percentile interval of the defined resample values, None if there are none."""
    if not values:
        return None
    values.sort()
    return [_percentile(values, 2.5), _percentile(values, 97.5)]


def bootstrap_cis(codes_by_lang: Mapping[str, Sequence[int]], n_resamples: int,
                  seed: int) -> dict[str, dict[str, list[float] | None]]:
    """Stratified paired bootstrap CIs of dissociation, retention and delta_pr.

    Each resample draws every language's items with replacement (the same draw serves both
    models, since an item code holds both) and yields per-language values plus the overall
    values (pooled rates, mean-over-languages delta_pr). Undefined values are skipped.
    """
    rng = random.Random(seed)
    langs = sorted(codes_by_lang)
    keys = (*langs, "overall")
    draws: dict[str, tuple[list[float], ...]] = {k: ([], [], []) for k in keys}
    for _ in range(n_resamples):
        pooled: Counter[int] = Counter()
        deltas: list[float | None] = []
        for lang in langs:
            codes = codes_by_lang[lang]
            hist = Counter(rng.choices(codes, k=len(codes)))
            pooled.update(hist)
            stats = _code_rates(hist)
            deltas.append(stats[2])
            _collect(draws[lang], stats)
        diss, ret, _ = _code_rates(pooled)
        _collect(draws["overall"], (diss, ret, _mean_defined(deltas)))
    return {k: {"dissociation_ci95": _interval(draws[k][0]),
                "retention_ci95": _interval(draws[k][1]),
                "delta_pr_ci95": _interval(draws[k][2])} for k in keys}


def _collect(sinks: tuple[list[float], ...], values: Sequence[float | None]) -> None:
    """Append each defined value to its list."""
    for sink, value in zip(sinks, values):
        if value is not None:
            sink.append(value)


def _rows_by_lang(items: Sequence[Mapping[str, Any]]) -> dict[str, list[Row]]:
    """Rows grouped by language, ordered by item id so input order cannot move the bootstrap."""
    grouped: dict[str, list[tuple[str, Row]]] = {}
    for item in items:
        if LANG not in item:
            raise ValueError(f"item {item.get(ID, '?')}: missing field '{LANG}'")
        grouped.setdefault(str(item[LANG]), []).append((str(item.get(ID, "")), _row(item)))
    return {lang: [row for _, row in sorted(pairs, key=lambda p: p[0])]
            for lang, pairs in sorted(grouped.items())}


def summarize(items: Sequence[Mapping[str, Any]], n_resamples: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Per-language and overall Summary (docs/results-schema.md), fates recomputed from outcomes."""
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, but is {n_resamples}")
    by_lang = _rows_by_lang(items)
    per_language = {lang: _point_summary(rows) for lang, rows in by_lang.items()}
    # The paper's ΔPR is a per-language quantity; pooling would let big languages dominate.
    overall = dataclasses.replace(_point_summary([row for rows in by_lang.values() for row in rows]),
                                  delta_pr=_mean_defined([s.delta_pr for s in per_language.values()]),
                                  delta_pr_aggregation="mean_over_languages")
    codes = {lang: [row["code"] for row in rows] for lang, rows in by_lang.items()}
    cis = bootstrap_cis(codes, n_resamples, seed)
    return {"per_language": {lang: dataclasses.replace(s, **cis[lang]).to_dict() for lang, s in per_language.items()},
            "overall": dataclasses.replace(overall, **cis["overall"]).to_dict(),
            "bootstrap": {"n_resamples": n_resamples, "seed": seed}}


def _diff(stored: Any, fresh: Any, path: str, out: list[str]) -> None:
    """Append a line per difference between two JSON-like values (floats within tolerance)."""
    if isinstance(stored, Mapping) and isinstance(fresh, Mapping):
        for key in sorted(set(stored) | set(fresh), key=str):
            if key not in fresh:
                out.append(f"{path}.{key}: stored but not recomputed")
            elif key not in stored:
                out.append(f"{path}.{key}: missing (recomputed {fresh[key]!r})")
            else:
                _diff(stored[key], fresh[key], f"{path}.{key}", out)
    elif isinstance(stored, (list, tuple)) and isinstance(fresh, (list, tuple)):
        if len(stored) != len(fresh):
            out.append(f"{path}: stored {stored!r} != recomputed {fresh!r}")
            return
        for i, (a, b) in enumerate(zip(stored, fresh)):
            _diff(a, b, f"{path}[{i}]", out)
    elif not _same_scalar(stored, fresh):
        out.append(f"{path}: stored {stored!r} != recomputed {fresh!r}")


def _same_scalar(a: Any, b: Any) -> bool:
    """Equality for JSON scalars: bools exactly, numbers within FLOAT_TOLERANCE."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=0.0, abs_tol=FLOAT_TOLERANCE)
    return a == b


def recompute_check(results: Mapping[str, Any]) -> list[str]:
    """Differences between stored item fates/summary and ones recomputed from the items."""
    diffs: list[str] = []
    items = results.get("items")
    if not isinstance(items, list):
        return ["items: missing or not a list"]
    for item in items:
        both, fate = item_fate(item)
        where = f"items[{_where(item)}]"
        if item.get(BOTH_CORRECT) != both:
            diffs.append(f"{where}.{BOTH_CORRECT}: stored {item.get(BOTH_CORRECT)!r} "
                         f"!= recomputed {both!r}")
        fresh_fate = fate.value if fate else None
        if item.get(FATE) != fresh_fate:
            diffs.append(f"{where}.{FATE}: stored {item.get(FATE)!r} != recomputed {fresh_fate!r}")
    stored = results.get("summary")
    if not isinstance(stored, Mapping):
        return [*diffs, "summary: missing or not an object"]
    settings = stored.get("bootstrap") or {}
    fresh = summarize(items, int(settings.get("n_resamples", DEFAULT_RESAMPLES)),
                      int(settings.get("seed", DEFAULT_SEED)))
    _diff(stored, fresh, "summary", diffs)
    return diffs
