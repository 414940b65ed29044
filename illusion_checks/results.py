"""Results out: the one owner of the results format. Assemble, validate, read and write the results JSON:
schema v1 (one compressed run) and schema v2 (a sweep or search: one v1 object per run under `runs`, the
search under `search`; a v1 file is a single run, `runs_of`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from illusion_checks import __version__
from illusion_checks.fates import Fate
from illusion_checks.metrics import DEFAULT_RESAMPLES, DEFAULT_SEED, recompute_check, summarize
from illusion_checks.noise_floor import check as check_noise_floor
from illusion_checks.records import FATE, SCHEMA, ItemRecord, Note, ResultsError
from illusion_checks.spec_steps import spec_steps

__all__ = ["SCHEMA", "SCHEMA_V2", "ResultsError", "build_results", "checked_summary", "is_multi_run",
           "items_by_fate", "load_results", "multi_results", "note", "primary_run", "run_label", "runs_of",
           "steps_among", "steps_of", "validate", "validate_multi"]
SCHEMA_V2 = "illusion-checks/results/v2"
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


def note(kind: str, lang: str | None, message: str) -> dict[str, Any]:
    """One entry of `notes`: something the run did differently from what was asked, said once."""
    return Note(kind=kind, lang=lang, message=message).to_dict()


def build_results(config: dict[str, Any], items: Sequence[ItemRecord | Mapping[str, Any]], n_resamples: int = 1000,
                  notes: Sequence[Note | Mapping[str, Any]] = (), noise_floor: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The full results object: config, items sorted by (lang, id), their summary, the run's notes
    and, when measured, the A/A noise floor (`noise_floor.py`).

    Items and notes are records or their dicts (read with `from_dict`: a malformed one is a ResultsError)."""
    records = sorted((_record(ItemRecord, item, f"items[{n}]") for n, item in enumerate(items)),
                     key=lambda record: (record.lang, record.id))
    rows = [record.to_dict() for record in records]
    config = {"package_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              **config}
    summary = summarize(rows, n_resamples=n_resamples, seed=config.get("seed", 42))
    results = {"schema": SCHEMA, "config": config, "items": rows, "summary": summary,
               "notes": [_record(Note, n, f"notes[{k}]").to_dict() for k, n in enumerate(notes)], "gates": []}
    return results if noise_floor is None else {**results, "noise_floor": dict(noise_floor)}


def _record(cls: type[ItemRecord] | type[Note], value: Any, where: str) -> Any:
    """`value` if it already is a `cls` record, else the record read from its dict."""
    return value if isinstance(value, cls) else cls.from_dict(value, where)


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
        errors.extend(_problems(ItemRecord, item, f"{where}: items[{n}]"))
    if not isinstance(results.get("gates", []), list):
        errors.append(f"{where}: field 'gates' must be a list")
    notes = results.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, Mapping) and isinstance(n.get("message"), str)
                                              for n in notes):
        return errors + [f"{where}: field 'notes' must be a list of objects with a 'message' string"]
    for k, entry in enumerate(notes):
        errors.extend(_problems(Note, entry, f"{where}: notes[{k}]"))
    if results.get("noise_floor") is not None:
        errors.extend(check_noise_floor(results["noise_floor"], f"{where}: noise_floor"))
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


def _problems(cls: type[ItemRecord] | type[Note], value: Any, where: str) -> list[str]:
    """Why `value` is not a `cls` record (its first problem, naming the field), or nothing."""
    try:
        cls.from_dict(value, where)
    except ResultsError as error:
        return [str(error)]
    return []


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file (v1: one compressed run; v2: a sweep or search, each run a v1
    object); errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"results file '{path}' does not exist")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from error
    multi = isinstance(results, dict) and is_multi_run(results)
    errors = validate_multi(results, str(path)) if multi else validate(results, str(path))
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ResultsError("; ".join(errors[:5]) + more)
    return results


def items_by_fate(items: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Both-correct items grouped by fate."""
    groups: dict[str, list[Mapping[str, Any]]] = {fate.value: [] for fate in Fate}
    for item in items:
        if item[FATE] is not None:
            groups[item[FATE]].append(item)
    return groups


def is_multi_run(results: Mapping[str, Any]) -> bool:
    """Whether a results object holds several compressed runs (schema v2): the one way to ask."""
    return results.get("schema") == SCHEMA_V2


def runs_of(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The v1 results object of each compressed run (a v1 file is one run)."""
    return list(results["runs"]) if is_multi_run(results) else [results]  # type: ignore[list-item]


def multi_results(runs: Sequence[dict[str, Any]], search: dict[str, Any] | None = None) -> dict[str, Any]:
    """A schema-v2 results object, with each spec's paired step from the next less compressed one."""
    return {"schema": SCHEMA_V2, "runs": list(runs), "search": search, "steps": steps_among(runs)}


def steps_among(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each run's paired step from the next less compressed run of its method (`spec_steps`)."""
    return spec_steps(runs, [run_label(run) for run in runs])


def steps_of(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A sweep's or search's paired steps, recomputed from its runs (what the readers show: files written
    before `steps` existed have none); [] for a single run."""
    return steps_among(runs_of(results)) if is_multi_run(results) else []


def run_label(run: Mapping[str, Any]) -> str:
    """The spec a run compressed with (or the prebuilt compressed model's name)."""
    compressed = run["config"]["compressed"]
    return compressed.get("spec") or compressed["name"]


def primary_run(results: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run a report centres on (a search's chosen level, else the first spec) and the others."""
    runs = runs_of(results)
    best = (results.get("search") or {}).get("best") if is_multi_run(results) else None
    index = next((i for i, run in enumerate(runs) if run_label(run) == best), 0)
    return runs[index], runs[:index] + runs[index + 1:]


def validate_multi(results: Any, where: str) -> list[str]:
    """Schema-v2 problems, each naming the field: `runs` a non-empty list of valid v1 results,
    `search` null or an object with `best`."""
    runs = results.get("runs")
    if not isinstance(runs, list) or not runs:
        return [f"{where}: field 'runs' must be a non-empty list of results, got {type(runs).__name__}"]
    errors = [error for i, run in enumerate(runs) for error in validate(run, f"{where}: runs[{i}]")]
    search = results.get("search")
    if search is not None and (not isinstance(search, Mapping) or "best" not in search):
        errors.append(f"{where}: field 'search' must be null or an object with 'best'")
    labels = [run_label(run) for run in runs if isinstance(run, Mapping) and "config" in run] if not errors else []
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        errors.append(f"{where}: runs: spec {twice[0]!r} appears more than once")
    return errors
