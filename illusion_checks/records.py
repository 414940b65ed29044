"""Typed records of the results contract `illusion-checks/results/v1` (docs/results-schema.md).

One frozen dataclass per JSON record, each field named after its JSON key and declared in the
file's key order, so `to_dict()` writes exactly the dict the writers always wrote (key order
included; numbers are passed through untouched) and `from_dict(d)` reads it back. Constructors take
keyword arguments only, the JSON keys: `Outcome(ff=FFGeneration(correct=..., ...), cs=..., ...)`.

Fields that v1 writers added after the first release (or that `results.validate` never required)
may be absent from a file. They default to the sentinel `ABSENT`: `from_dict` leaves a missing one
`ABSENT`, and `to_dict` leaves it out, so absent stays absent and null stays null. Keys a record
does not know (written by a newer v1 writer) are kept in `extra` and written after the known ones.

`from_dict` raises `ResultsError` (re-exported by `illusion_checks.results`) whose message starts
with the field's path: `where` names the record (`results.json: items[3]`), nested paths follow
(`...items[3].compressed.mc: field 'scores' must be a list of numbers, got 'x'`).

The key constants at the end (`FF`, `MC`, `GOLD_RANK`, `REFERENCE`, ...) are the JSON keys that
`metrics` reads from item dicts, each checked at import to be a field of its record. Engine-free:
imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from illusion_checks.fates import Fate

SCHEMA = "illusion-checks/results/v1"


class ResultsError(ValueError):
    """A results file that does not follow the schema; the message names file and field."""


class _Absent(enum.Enum):
    ABSENT = "ABSENT"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent.ABSENT  # an optional field that is not in the file (unlike None, a JSON null)
Absent = Literal[_Absent.ABSENT]
_R = TypeVar("_R", bound="Record")
Parse = Callable[[Any, str, str], Any]  # (value, where, key) -> the field's value, or a ResultsError


# --- field kinds --------------------------------------------------------------------------------

def _at(where: str, key: str) -> str:
    """The path of `key` inside the record at `where`."""
    return f"{where}.{key}" if where else key


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong(where: str, key: str, noun: str, value: Any) -> ResultsError:
    return ResultsError(f"{_prefix(where)}field '{key}' must be {noun}, got {_shown(value)}")


def _kind(noun: str, accept: Callable[[Any], bool], build: Callable[[Any, str], Any] = lambda v, path: v,
          nullable: bool = False) -> Parse:
    """A field that must satisfy `accept` (or be null when `nullable`), then turned into its value."""
    noun = f"{noun} or null" if nullable else noun

    def parse(value: Any, where: str, key: str) -> Any:
        if nullable and value is None:
            return None
        if not accept(value):
            raise _wrong(where, key, noun, value)
        return build(value, _at(where, key))
    return parse


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (list, tuple)) and all(check(v) for v in value)


def _is_pair(value: Any) -> bool:
    return _list_of(_is_number)(value) and len(value) == 2


_is_str, _is_bool = (lambda value: isinstance(value, str)), (lambda value: isinstance(value, bool))
_is_object = lambda value: isinstance(value, Mapping)  # noqa: E731


def _is_reasons(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(reason, str) for reason in value.values())


_BOOL, _BOOL_OR_NULL = _kind("true or false", _is_bool), _kind("true or false", _is_bool, nullable=True)
_INT, _INT_OR_NULL = _kind("an integer", _is_int), _kind("an integer", _is_int, nullable=True)
_NUMBER, _NUMBER_OR_NULL = _kind("a number", _is_number), _kind("a number", _is_number, nullable=True)
_STR, _STR_OR_NULL = _kind("a string", _is_str), _kind("a string", _is_str, nullable=True)
_STRS = _kind("a list of strings", _list_of(_is_str), lambda v, path: tuple(v))
_NUMBERS = _kind("a list of numbers", _list_of(_is_number), lambda v, path: tuple(v))
_INTERVAL = _kind("a [low, high] pair of numbers", _is_pair, lambda v, path: tuple(v), nullable=True)
_OBJECT = _kind("an object", _is_object, lambda v, path: _plain(v))
_REASONS = _kind("an object of strings", _is_reasons, lambda v, path: dict(v))


def _record(cls: type[Record], nullable: bool = False) -> Parse:
    """A nested record; a required one reports a non-object itself (`<path>: expected an object`)."""
    build = lambda v, path: cls.from_dict(v, path)  # noqa: E731
    if nullable:
        return _kind("an object", _is_object, build, nullable=True)
    return lambda value, where, key: build(value, _at(where, key))


def _records_list(cls: type[Record]) -> Parse:
    """A list of records (`gold_token.path`)."""
    return _kind("a list of objects", _list_of(_is_object),
                 lambda v, path: tuple(cls.from_dict(block, f"{path}[{k}]") for k, block in enumerate(v)))


def _records_by_name(cls: type[Record]) -> Parse:
    """An object of named records (`ablations`)."""
    return _kind("an object", _is_object,
                 lambda v, path: {name: cls.from_dict(block, _at(path, str(name))) for name, block in v.items()})


def _fate(value: Any, where: str, key: str) -> Fate | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in {fate.value for fate in Fate}:
        raise ResultsError(f"{_prefix(where)}'{key}' is {value!r}, expected one of {[f.value for f in Fate]} or null")
    return Fate(value)


def _field(parse: Parse, optional: bool = False, sequence: bool = False) -> Any:
    """A JSON field: how to read it, whether a file may lack it, whether it is held as a tuple."""
    metadata = {"parse": parse, "sequence": sequence}
    return dataclasses.field(default=ABSENT, metadata=metadata) if optional else dataclasses.field(metadata=metadata)


def _plain(value: Any) -> Any:
    """A JSON-ready copy: records as dicts, tuples as lists, enums as their values."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- the records --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """Base of every record: JSON keys are the dataclass fields (but `extra`), in file order."""

    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for f in self._json_fields():
            value = getattr(self, f.name)
            if f.metadata["sequence"] and isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    @classmethod
    def _json_fields(cls) -> tuple[dataclasses.Field, ...]:
        return tuple(f for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The record's JSON keys, in the order files hold them."""
        return tuple(f.name for f in cls._json_fields())

    @classmethod
    def required_keys(cls) -> tuple[str, ...]:
        """The keys every v1 file has (the others may be absent: `ABSENT`)."""
        return tuple(f.name for f in cls._json_fields() if f.default is not ABSENT)

    def to_dict(self) -> dict[str, Any]:
        """The record as the results file holds it: known keys in order, absent ones left out, then `extra`."""
        out = {f.name: _plain(getattr(self, f.name)) for f in self._json_fields()
               if getattr(self, f.name) is not ABSENT}
        out.update((key, _plain(value)) for key, value in self.extra.items() if key not in out)
        return out

    @classmethod
    def from_dict(cls: type[_R], data: Any, where: str = "") -> _R:
        """Read one record; a ResultsError names `where` and the field on malformed input."""
        if not isinstance(data, Mapping):
            raise ResultsError(f"{_prefix(where)}expected an object")
        values: dict[str, Any] = {}
        for f in cls._json_fields():
            if f.name in data:
                values[f.name] = f.metadata["parse"](data[f.name], where, f.name)
            elif f.default is not ABSENT:
                raise ResultsError(f"{_prefix(where)}missing field '{f.name}'")
        extra = {key: _plain(value) for key, value in data.items() if key not in values}
        record = cls(**values, extra=extra)
        record._check(where)
        return record

    def _check(self, where: str) -> None:
        """Checks across fields, after each field has been read (none by default)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Generation(Record):
    """A greedy generation probe: `cs`, `zero_shot_short`, each of `ablations`."""

    correct: bool = _field(_BOOL)
    output: str = _field(_STR)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FFGeneration(Generation):
    """`ff`: open generation, with token-F1, exact match and whether the answer begins with the gold."""

    f1: float = _field(_NUMBER)
    em: bool = _field(_BOOL)
    begins_with_gold: bool | Absent = _field(_BOOL, optional=True)  # added in v1's answer-start release


@dataclasses.dataclass(frozen=True, kw_only=True)
class OneShot(Generation):
    """`one_shot`: 1-shot FF and the exemplar it was shown (`exemplar_*` absent in older files)."""

    exemplar_id: str | Absent = _field(_STR, optional=True)
    exemplar_source: str | None | Absent = _field(_STR_OR_NULL, optional=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MCChoice(Record):
    """`mc`: summed option log-probabilities (`scores`), their argmax (`choice`), Appendix B's check."""

    correct: bool = _field(_BOOL)
    choice: int = _field(_INT)
    scores: tuple[float, ...] = _field(_NUMBERS, sequence=True)
    boundary_ok: bool | Absent = _field(_BOOL, optional=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PathStep(Record):
    """One token of `gold_token.path`, ranked at its own position."""

    id: int = _field(_INT)
    text: str = _field(_STR)
    rank: int | None = _field(_INT_OR_NULL)
    margin: float | None = _field(_NUMBER_OR_NULL)
    rank_above: int | Absent = _field(_INT, optional=True)  # censored: the rank only exceeds this (rank null)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GoldToken(Record):
    """`gold_token`: the gold's first content token, what it is conditioned on, the path to it."""

    id: int = _field(_INT)
    text: str = _field(_STR)
    offset: int | Absent = _field(_INT, optional=True)
    conditioned_on: str = _field(_STR)
    source: str = _field(_STR)
    boundary_ok: bool = _field(_BOOL)
    boundary_reason: str | Absent = _field(_STR, optional=True)
    path: tuple[PathStep, ...] | Absent = _field(_records_list(PathStep), optional=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reach(Record):
    """`beam` / `sample`: the searched outputs and whether any reached the gold."""

    reached: bool = _field(_BOOL)
    outputs: tuple[str, ...] = _field(_STRS, sequence=True)
    distinct: int | Absent = _field(_INT, optional=True)  # how many different answer lines the outputs are


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome(Record):
    """What one model did on one item; null where a probe did not run, `ABSENT` where the file predates it."""

    ff: FFGeneration = _field(_record(FFGeneration))
    cs: Generation = _field(_record(Generation))
    mc: MCChoice = _field(_record(MCChoice))
    gold_rank: int | None = _field(_INT_OR_NULL)
    gold_margin: float | None = _field(_NUMBER_OR_NULL)
    gold_token: GoldToken | None | Absent = _field(_record(GoldToken, nullable=True), optional=True)
    gold_token_boundary_ok: bool | Absent = _field(_BOOL, optional=True)
    beam: Reach | None = _field(_record(Reach, nullable=True))
    sample: Reach | None = _field(_record(Reach, nullable=True))
    one_shot: OneShot | None = _field(_record(OneShot, nullable=True))
    zero_shot_short: Generation = _field(_record(Generation))
    ablations: Mapping[str, Generation] | Absent = _field(_records_by_name(Generation), optional=True)
    unavailable: Mapping[str, str] | Absent = _field(_REASONS, optional=True)  # probe -> why it could not run
    gold_rank_above: int | Absent = _field(_INT, optional=True)  # rank known only to exceed this (gold_rank null)
    truncation: Mapping[str, Mapping[str, bool]] | Absent = _field(_OBJECT, optional=True)  # prompt kind -> {cut, ...}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ItemRecord(Record):
    """One entry of `items`: the item as evaluated, both models' outcomes, and its fate."""

    id: str = _field(_STR)
    lang: str = _field(_STR)
    question: str = _field(_STR)
    context: str = _field(_STR)
    gold: str = _field(_STR)
    aliases: tuple[str, ...] | Absent = _field(_STRS, optional=True, sequence=True)
    options: tuple[str, ...] = _field(_STRS, sequence=True)
    gold_index: int = _field(_INT)
    reference: Outcome = _field(_record(Outcome))
    compressed: Outcome = _field(_record(Outcome))
    both_correct: bool = _field(_BOOL)
    fate: Fate | None = _field(_fate)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.fate, str) and not isinstance(self.fate, Fate):
            object.__setattr__(self, "fate", Fate(self.fate))

    def _check(self, where: str) -> None:
        if not 0 <= self.gold_index < len(self.options):
            raise ResultsError(f"{_prefix(where)}'gold_index' {self.gold_index!r} does not index 'options'")
        if self.options[self.gold_index] != self.gold:
            raise ResultsError(f"{_prefix(where)}options[gold_index] is {self.options[self.gold_index]!r}, "
                               f"not the gold {self.gold!r}")
        for model in MODELS:
            if len(getattr(self, model).mc.scores) != len(self.options):
                raise ResultsError(f"{_at(_at(where, model), MC)}: 'scores' must hold one score per option")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LanguageSummary(Record):
    """`summary.per_language[lang]` and `summary.overall` (docs/results-schema.md, "Summary"): nested
    blocks stay plain dicts, as `metrics.summarize` builds them; `delta_pr_aggregation` is only in `overall`."""

    n_items: int = _field(_INT)
    n_both_correct: int = _field(_INT)
    fates: Mapping[str, int] = _field(_OBJECT)
    dissociation_rate: float | None = _field(_NUMBER_OR_NULL)
    dissociation_ci95: tuple[float, float] | None = _field(_INTERVAL, sequence=True)
    retention: float | None = _field(_NUMBER_OR_NULL)
    retention_ci95: tuple[float, float] | None = _field(_INTERVAL, sequence=True)
    acc: Mapping[str, Mapping[str, float | None]] = _field(_OBJECT)
    d_hat: Mapping[str, float | None] = _field(_OBJECT)
    delta_pr: float | None = _field(_NUMBER_OR_NULL)
    delta_pr_ci95: tuple[float, float] | None = _field(_INTERVAL, sequence=True)
    recovery: Mapping[str, Mapping[str, Any]] = _field(_OBJECT)
    median_gold_rank: Mapping[str, float | None] = _field(_OBJECT)
    answer_start: Mapping[str, Mapping[str, Any]] | Absent = _field(_OBJECT, optional=True)
    rank_interpretable: bool | None | Absent = _field(_BOOL_OR_NULL, optional=True)
    rank_boundary: Mapping[str, Any] | Absent = _field(_OBJECT, optional=True)
    prune_gap: Mapping[str, float | None] = _field(_OBJECT)
    truncation: Mapping[str, Mapping[str, Any]] | Absent = _field(_OBJECT, optional=True)
    mcnemar: Mapping[str, Mapping[str, Any]] | Absent = _field(_OBJECT, optional=True)
    delta_pr_aggregation: str | Absent = _field(_STR, optional=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Note(Record):
    """One entry of `notes`: something the run did differently from what was asked, said once."""

    kind: str = _field(_STR)
    lang: str | None = _field(_STR_OR_NULL)
    message: str = _field(_STR)


# --- keys the engine-free readers name (metrics, results); each is checked to be a record field ---

def _key(record: type[Record], name: str) -> str:
    if name not in record.keys():
        raise AssertionError(f"{name!r} is not a field of {record.__name__}")
    return name


ID, LANG, REFERENCE, COMPRESSED, BOTH_CORRECT, FATE = (
    _key(ItemRecord, name) for name in ("id", "lang", "reference", "compressed", "both_correct", "fate"))
MODELS: tuple[str, str] = (REFERENCE, COMPRESSED)
FF, CS, MC, GOLD_RANK, BEAM, SAMPLE, ONE_SHOT, ZERO_SHOT_SHORT = (
    _key(Outcome, name) for name in ("ff", "cs", "mc", "gold_rank", "beam", "sample", "one_shot", "zero_shot_short"))
GOLD_TOKEN, TRUNCATION = _key(Outcome, "gold_token"), _key(Outcome, "truncation")
CORRECT = _key(Generation, "correct")
BEGINS_WITH_GOLD = _key(FFGeneration, "begins_with_gold")
REACHED = _key(Reach, "reached")
