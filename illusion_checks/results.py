"""Results out: assemble, validate, and atomically write or read the results JSON (schema v1)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from illusion_checks import __version__
from illusion_checks.atomic import write_text_atomic
from illusion_checks.fates import Fate
from illusion_checks.metrics import DEFAULT_RESAMPLES, DEFAULT_SEED, recompute_check, summarize

SCHEMA = "illusion-checks/results/v1"
_OUTCOME_KEYS = ("ff", "cs", "mc", "gold_rank", "gold_margin", "beam", "sample", "one_shot", "zero_shot_short")
_ITEM_KEYS = ("id", "lang", "question", "context", "gold", "options", "gold_index",
              "reference", "compressed", "both_correct", "fate")
# What the report, the terminal summary and the gates read besides the items: (field, type or None).
_READ_FIELDS = (
    ("config.reference", Mapping), ("config.reference.name", None), ("config.reference.fingerprint", None),
    ("config.compressed", Mapping), ("config.compressed.name", None), ("config.compressed.spec", None),
    ("config.compressed.calibration", None), ("config.compressed.fingerprint", None),
    ("config.dataset", Mapping), ("config.dataset.name", None), ("config.dataset.langs", list),
    ("config.dataset.items_per_language", None), ("config.dataset.distractors", None),
    ("config.seed", None), ("config.created", None), ("config.package_version", None),
    ("summary.per_language", Mapping), ("summary.overall", Mapping),
)
_TYPE_NAMES = {Mapping: "an object", list: "a list"}


class ResultsError(ValueError):
    """A results file that does not follow the schema; the message names file and field."""


def note(kind: str, lang: str | None, message: str) -> dict[str, Any]:
    """One entry of `notes`: something the run did differently from what was asked, said once."""
    return {"kind": kind, "lang": lang, "message": message}


def build_results(config: dict[str, Any], items: list[dict[str, Any]], n_resamples: int = 1000,
                  notes: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The full results object: config, items sorted by (lang, id), their summary and the run's notes."""
    items = sorted(items, key=lambda item: (item["lang"], item["id"]))
    config = {"package_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              **config}
    summary = summarize(items, n_resamples=n_resamples, seed=config.get("seed", 42))
    return {"schema": SCHEMA, "config": config, "items": items, "summary": summary, "notes": [dict(n) for n in notes],
            "gates": []}


def validate(results: Any, where: str = "results") -> list[str]:
    """Every way `results` departs from schema v1 (empty when it conforms)."""
    if not isinstance(results, Mapping):
        return [f"{where}: expected a JSON object at the top level"]
    errors = []
    if results.get("schema") != SCHEMA:
        errors.append(f"{where}: field 'schema' is {results.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("config", "summary"):
        if not isinstance(results.get(key), Mapping):
            errors.append(f"{where}: field '{key}' must be an object")
    errors.extend(f"{where}: {error}" for error in _missing_fields(results))
    items = results.get("items")
    if not isinstance(items, list):
        return errors + [f"{where}: field 'items' must be a list"]
    for n, item in enumerate(items):
        errors.extend(_validate_item(item, f"{where}: items[{n}]"))
    if not isinstance(results.get("gates", []), list):
        errors.append(f"{where}: field 'gates' must be a list")
    notes = results.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, Mapping) and isinstance(n.get("message"), str)
                                              for n in notes):
        errors.append(f"{where}: field 'notes' must be a list of objects with a 'message' string")
    return errors


def _missing_fields(results: Mapping[str, Any]) -> list[str]:
    """Each field in _READ_FIELDS that is absent or of the wrong type (below a parent that is an object)."""
    errors = []
    for field, kind in _READ_FIELDS:
        *parents, key = field.split(".")
        block: Any = results
        for name in parents:
            block = block.get(name) if isinstance(block, Mapping) else None
        if not isinstance(block, Mapping):
            continue  # the parent's own error says it
        if key not in block:
            errors.append(f"missing field '{field}'")
        elif kind is not None and not isinstance(block[key], kind):
            errors.append(f"field '{field}' must be {_TYPE_NAMES[kind]}")
    summary = results.get("summary")
    per_language = summary.get("per_language") if isinstance(summary, Mapping) else None
    if isinstance(per_language, Mapping):
        errors.extend(f"field 'summary.per_language.{lang}' must be an object"
                      for lang, block in per_language.items() if not isinstance(block, Mapping))
    return errors


def checked_summary(results: Mapping[str, Any], where: str = "results") -> dict[str, Any]:
    """The summary recomputed from the items (what gates must read), or a ResultsError naming the
    first fields where the stored summary or an item's fate disagrees with it.

    Fields the stored summary lacks (results written before they existed) are not disagreements.
    """
    settings = results["summary"].get("bootstrap") or {}
    try:
        fresh = summarize(results["items"], int(settings.get("n_resamples", DEFAULT_RESAMPLES)),
                          int(settings.get("seed", DEFAULT_SEED)))
        differences = recompute_check({**results, "summary": _with_absent_fields(results["summary"], fresh)})
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ResultsError(f"{where}: cannot recompute the summary from its items "
                           f"({type(error).__name__}: {error})") from error
    if differences:
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        raise ResultsError(f"{where}: the stored summary does not match its items (recomputed with "
                           f"illusion_checks.metrics.summarize): {'; '.join(differences[:3])}{more}")
    return fresh


def _with_absent_fields(stored: Any, fresh: Any) -> Any:
    """`stored`, with the fields only `fresh` has added at every level."""
    if not isinstance(stored, Mapping) or not isinstance(fresh, Mapping):
        return stored
    return {**fresh, **{key: _with_absent_fields(value, fresh.get(key)) for key, value in stored.items()}}


def _validate_item(item: Any, where: str) -> list[str]:
    if not isinstance(item, Mapping):
        return [f"{where}: expected an object"]
    errors = [f"{where}: missing field '{key}'" for key in _ITEM_KEYS if key not in item]
    if errors:
        return errors
    options = item["options"]
    if not isinstance(options, list) or not isinstance(item["gold_index"], int) or not 0 <= item["gold_index"] < len(options):
        errors.append(f"{where}: 'gold_index' {item['gold_index']!r} does not index 'options'")
    elif options[item["gold_index"]] != item["gold"]:
        errors.append(f"{where}: options[gold_index] is {options[item['gold_index']]!r}, not the gold {item['gold']!r}")
    if item["fate"] is not None and item["fate"] not in {fate.value for fate in Fate}:
        errors.append(f"{where}: 'fate' is {item['fate']!r}, expected one of {[f.value for f in Fate]} or null")
    for model in ("reference", "compressed"):
        outcome = item[model]
        if not isinstance(outcome, Mapping):
            errors.append(f"{where}.{model}: expected an object")
            continue
        errors.extend(f"{where}.{model}: missing field '{key}'" for key in _OUTCOME_KEYS if key not in outcome)
        mc = outcome.get("mc")
        if isinstance(mc, Mapping) and (not isinstance(mc.get("scores"), list) or len(mc["scores"]) != len(options)):
            errors.append(f"{where}.{model}.mc: 'scores' must hold one score per option")
    return errors


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write JSON atomically (`atomic.write_text_atomic`): readers never see half a file."""
    return write_text_atomic(path, json.dumps(payload, ensure_ascii=False))


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"results file '{path}' does not exist")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from error
    errors = validate(results, str(path))
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ResultsError("; ".join(errors[:5]) + more)
    return results


def items_by_fate(items: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Both-correct items grouped by fate."""
    groups: dict[str, list[Mapping[str, Any]]] = {fate.value: [] for fate in Fate}
    for item in items:
        if item["fate"] is not None:
            groups[item["fate"]].append(item)
    return groups
