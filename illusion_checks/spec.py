"""What one evaluation is asked to do, as plain frozen data: the pytest glue, benchmarks and the
Python API all build it, and every option's default lives here once.

`EvaluationSpec` shapes the evaluation (models, compression, data, probes, device, cache);
`GateSpec` holds the release gates applied to its summary. Each field is checked and brought to
its canonical type when the object is made (`normalize`: a CLI string or a Python value alike), so
a bad value raises a one-line ValueError naming its option (`--illusion-items: 0 must be at least
1`) before anything loads; `EvaluationSpec.check()` adds what no field can say alone (a reference
model, exactly one of compress / compressed, a compression spec that parses, a calibration source
that exists, vLLM-only options only with the vLLM backend). Importing this module imports no torch.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from illusion_checks.backends import BACKENDS
from illusion_checks.backends.base import DEFAULT_BATCH_SIZE
from illusion_checks.choices import ABLATIONS, DISTRACTORS
from illusion_checks.compress.calibration import SOURCES
from illusion_checks.compress.spec import parse_spec, read_recipe_file
from illusion_checks.gates import (DELTA_PR_BOUNDS, DISSOCIATION_BOUNDS, GATE_ON, METRICS, RETENTION_BOUNDS,
                                   check_gate_on, threshold_values)
from illusion_checks.options import flag
from illusion_checks.search import parse_search
from illusion_checks.served import SERVER_OPTIONS, ServerSettings, check_served, env_name
from illusion_checks.significance import DEFAULT_ALPHA

Progress = Callable[[str, int, int], None]  # (phase, done, total), running totals

DEVICES = ("auto", "cpu", "cuda", "mps")
INDEXED_DEVICE = r"(cuda|mps):\d+"
DTYPES = ("auto", "float32", "bfloat16", "float16")
ANSWER_SCOPES = ("line", "full")
THINKING = ("off", "on")  # a reasoning model's think span: off (the paper's non-thinking mode) or on
# served models: neutral (every request states no top-k, min-p or penalties, as the local reference
# decodes) or server (each server's own defaults from the model's generation_config.json: as deployed)
SERVER_SAMPLING = ("neutral", "server")


class BackendArgs(Mapping[str, Any]):
    """`--illusion-backend-args`: a JSON object of extra `vllm.LLM(...)` arguments, read-only and
    hashable (so the frozen spec stays hashable). `to_dict()` (or `dict(...)`) is a plain copy."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._text = json.dumps(dict(values or {}), sort_keys=True)  # canonical; JSON values only
        self._values = json.loads(self._text)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._values)

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._values[key])  # nested lists and objects stay unchanged here

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and self._values == dict(other)

    def __hash__(self) -> int:
        return hash(self._text)

    def __repr__(self) -> str:
        return f"BackendArgs({self._text})"

    def __str__(self) -> str:
        return self._text


@dataclass(frozen=True)
class EvaluationSpec:
    """Everything that shapes one evaluation; one field per `--illusion-*` option of the evaluation."""

    model: str | None = None  # reference: alias, hub id, directory or .gguf
    compress: str | None = None  # e.g. wanda:0.5, sparsegpt:2:4, rtn-int4; comma-separated: a sweep
    compressed: str | None = None  # a prebuilt compressed model instead of `compress`
    calibration: str = "english"
    calibration_samples: int = 128
    calibration_seqlen: int = 2048
    save_compressed: str | None = None
    dataset: str = "fixtures"
    strict_data: bool = False
    langs: tuple[str, ...] | None = None  # None: every language of the data set
    items: int = 200
    seed: int = 42
    distractors: str = "standard"
    ablations: tuple[str, ...] = ()
    answer_scope: str = "line"
    chat_template: bool = False
    thinking: str = "off"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | str = DEFAULT_BATCH_SIZE  # or "auto": halve on out-of-memory
    trust_remote_code: bool = False
    allow_pickle: bool = False
    no_reachability: bool = False
    noise_floor: bool = False  # probe the reference again (another batch size and order): the A/A fate changes
    cache_dir: str | None = None  # None: $ILLUSION_CHECKS_CACHE/results
    no_cache: bool = False
    backend: str = "hf"
    tensor_parallel_size: int = 1  # vllm backend: GPUs per pipeline stage
    pipeline_parallel_size: int = 1  # vllm backend: pipeline stages (e.g. nodes)
    backend_args: BackendArgs = BackendArgs()  # vllm backend: extra vllm.LLM(...) arguments
    search: str | None = None  # METHOD:LOW..HIGH: the highest sparsity whose gates pass
    search_step: float = 0.05
    tokenizer: str | None = None  # served models: a local tokenizer when the server has no /tokenize
    max_connections: int = 8  # served models: requests in flight per server
    request_timeout: float = 300.0  # served models: seconds one request may take
    api_key_env: str | None = None  # served models: the environment variable holding the API key
    server_sampling: str = "neutral"  # served models: SERVER_SAMPLING

    def __post_init__(self) -> None:
        _normalize_fields(self)

    @property
    def compress_specs(self) -> tuple[str, ...]:
        """The compression specs of `compress` (several: a sweep)."""
        return tuple(part.strip() for part in (self.compress or "").split(",") if part.strip())

    def check(self) -> None:
        """What no single field can say: a ValueError naming the option, before any model loads."""
        given = [flag(name) for name in ("compress", "compressed", "search") if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"{given[0]} and {given[1]} exclude each other; pass one")
        if not self.model:
            raise ValueError("--illusion-model: no reference model given; pass an alias, hub id, directory or .gguf")
        if not given:
            raise ValueError("--illusion-model needs --illusion-compress=SPEC[,SPEC...], --illusion-compressed=MODEL "
                             "or --illusion-search=METHOD:LOW..HIGH")
        self._check_compression()
        if self.calibration not in SOURCES and not Path(self.calibration).is_file():
            raise ValueError(f"--illusion-calibration: '{self.calibration}' is not {', '.join(SOURCES)} "
                             "or an existing .txt/.jsonl file")
        if self.thinking == "on" and not self.chat_template:
            raise ValueError("--illusion-thinking=on needs --illusion-chat-template: a think span is the chat "
                             "template's (Qwen3's enable_thinking)")
        self._check_backend_options()
        check_served(self)

    def _check_compression(self) -> None:
        specs = self.compress_specs
        if self.compress is not None and not specs:
            raise ValueError(f"--illusion-compress: '{self.compress}' names no compression spec")
        for spec in specs:
            try:
                parsed = parse_spec(spec)
            except ValueError as error:
                raise ValueError(f"--illusion-compress: {error}") from None
            if parsed.recipe_file:
                read_recipe_file(spec, parsed.recipe_file)  # its modifiers are llmcompressor's to check, later
        twice = sorted({spec for spec in specs if specs.count(spec) > 1})
        if twice:
            raise ValueError(f"--illusion-compress: '{twice[0]}' is listed twice in '{self.compress}'")
        if self.search:
            parse_search(self.search, self.search_step)
        if self.save_compressed and (len(specs) > 1 or self.search):
            raise ValueError(f"{flag('save_compressed')} saves one compressed model; it cannot be used with a sweep "
                             "or a search (run the chosen spec alone to save it)")
        unsaveable = next((spec for spec in specs if not parse_spec(spec).is_saveable), None)
        why = "transformers cannot save_pretrained a quanto-quantized model"
        if unsaveable and self.save_compressed:
            raise ValueError(f"{flag('save_compressed')}: {unsaveable} models cannot be saved ({why})")
        if unsaveable and self.backend == "vllm":
            raise ValueError(f"{flag('backend')}=vllm: {unsaveable} models cannot be saved for vLLM to load ({why}); "
                             f"use {flag('backend')}=hf")

    def _check_backend_options(self) -> None:
        if self.backend != "hf":
            return
        used = [name for name in ("tensor_parallel_size", "pipeline_parallel_size") if getattr(self, name) > 1]
        used += ["backend_args"] if self.backend_args else []
        if used:
            raise ValueError(f"{flag(used[0])} needs --illusion-backend=vllm "
                             "(the hf backend runs the model in this process, on one device)")


@dataclass(frozen=True)
class GateSpec:
    """Release gates: thresholds per language (`{lang or '*' or 'overall': value}`, a bare number for
    every language and overall, or the CLI's `sw=0.2,*=0.15` text) and what they compare."""

    max_dissociation: Mapping[str, float] | None = None
    max_delta_pr: Mapping[str, float] | None = None
    min_retention: Mapping[str, float] | None = None
    gate_on: str = "point"  # or ci95: the conservative end of the 95% CI; or mcnemar: the FF drop's test
    alpha: float = DEFAULT_ALPHA  # the significance level of mcnemar gates and of every gate's MDE

    def __post_init__(self) -> None:
        _normalize_fields(self)
        check_gate_on(self.gate_on, {"dissociation": self.max_dissociation, "delta_pr": self.max_delta_pr,
                                     "retention": self.min_retention})


# -- per-field normalization -------------------------------------------------------------------

def _text(name: str, optional: bool = True) -> Callable[[Any], Any]:
    def normal(value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise ValueError(f"{flag(name)}: {value!r} is not a string or a path")
    return normal


def _boolean(name: str) -> Callable[[Any], bool]:
    def normal(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{flag(name)}: {value!r} is not a boolean (True or False)")
        return value
    return normal


def _integer(name: str, minimum: int) -> Callable[[Any], int]:
    def normal(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"{flag(name)}: {value!r} is not an integer")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{flag(name)}: '{value}' is not an integer") from None
        if number < minimum:
            raise ValueError(f"{flag(name)}: {number} must be at least {minimum}")
        return number
    return normal


def choice(name: str, choices: tuple[str, ...], pattern: str | None = None) -> Callable[[Any], str]:
    """A check that a value is one of `choices` (or matches `pattern`), naming option `flag(name)`."""

    def normal(value: Any) -> str:
        if value not in choices and not (pattern and isinstance(value, str) and re.fullmatch(pattern, value)):
            shown = ", ".join(choices) + (" or an indexed device such as cuda:0" if pattern else "")
            raise ValueError(f"{flag(name)}: '{value}' is not one of {shown}")
        return value
    return normal


def _names(value: Any) -> tuple[str, ...]:
    """`a,b` or a sequence of names, stripped, without empty ones or repeats."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(str(part).strip() for part in parts if str(part).strip()))


def _langs(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    langs = _names(value)
    if not langs:
        shown = f"'{value}'" if isinstance(value, str) else repr(value)
        raise ValueError(f"--illusion-langs: {shown} names no language; expected e.g. en,de,sw")
    return langs


def _ablations(value: Any) -> tuple[str, ...]:
    names = _names(value)
    bad = [name for name in names if name not in ABLATIONS]
    if bad:
        raise ValueError(f"--illusion-ablations: {', '.join(bad)} not one of {', '.join(ABLATIONS)}")
    return names


def _seconds(name: str, what: str) -> Callable[[Any], float]:
    def normal(value: Any) -> float:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"{flag(name)}: {value!r} is not {what}")
        return number
    return normal


def _batch_size(value: Any) -> int | str:
    return value if value == "auto" else _integer("batch_size", 1)(value)


# vllm.LLM(...) arguments the tool sets itself, and the options that set them.
_MODELS = f"{flag('model')} or {flag('compressed')}"
OWN_BACKEND_ARGS = {"model": _MODELS, "tokenizer": _MODELS,  # each model's own tokenizer
                    **{name: flag(name) for name in ("dtype", "seed", "tensor_parallel_size", "pipeline_parallel_size",
                                                     "trust_remote_code")}}
JSON_TYPES = {"list": "array", "str": "string", "int": "number", "float": "number", "bool": "boolean",
              "NoneType": "null"}


def _backend_args(value: Any) -> BackendArgs:
    """A JSON object (CLI/ini text) or a mapping (Python API), without the arguments the tool sets."""
    option = flag("backend_args")
    if isinstance(value, BackendArgs):
        return value
    shown = f"'{' '.join(value.split())}'" if isinstance(value, str) else repr(value)  # one line
    try:
        parsed = {} if value is None else json.loads(value) if isinstance(value, str) else value
        if not isinstance(parsed, Mapping):
            raise ValueError(f"a JSON {JSON_TYPES.get(type(parsed).__name__, type(parsed).__name__)}")
        if any(not isinstance(key, str) for key in parsed):
            raise ValueError("keys must be strings")
        args = BackendArgs(parsed)
    except (ValueError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        reason = " ".join(str(error).split())
        raise ValueError(f"{option}: {shown} is not a JSON object ({reason})") from None
    for key, instead in OWN_BACKEND_ARGS.items():
        if key in args:
            raise ValueError(f"{option}: key '{key}' is set by the tool; use {instead} instead")
    return args


def _thresholds(name: str, bounds: tuple[float, float]) -> Callable[[Any], dict[str, float] | None]:
    return partial(threshold_values, METRICS[name].option, bounds=bounds)


def _alpha(value: Any) -> float:
    """A significance level strictly between 0 and 1 (CLI text or a number)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 < number < 1.0:  # also rejects nan
        raise ValueError(f"{flag('alpha')}: {value!r} is not a significance level (a number between 0 and 1)")
    return number


_NORMAL: dict[str, Callable[[Any], Any]] = {
    **{name: _text(name) for name in ("model", "compress", "compressed", "save_compressed", "cache_dir")},
    **{name: _text(name, optional=False) for name in ("calibration", "dataset")},
    **{name: _boolean(name) for name in ("strict_data", "chat_template", "trust_remote_code", "allow_pickle",
                                        "no_reachability", "noise_floor", "no_cache")},
    "calibration_samples": _integer("calibration_samples", 1),
    "calibration_seqlen": _integer("calibration_seqlen", 8),
    "items": _integer("items", 1),
    "seed": _integer("seed", 0),
    "langs": _langs,
    "distractors": choice("distractors", DISTRACTORS),
    "ablations": _ablations,
    "answer_scope": choice("answer_scope", ANSWER_SCOPES),
    "thinking": choice("thinking", THINKING),
    "device": choice("device", DEVICES, INDEXED_DEVICE),
    "dtype": choice("dtype", DTYPES),
    "batch_size": _batch_size,
    "backend": choice("backend", BACKENDS),
    "tensor_parallel_size": _integer("tensor_parallel_size", 1),
    "pipeline_parallel_size": _integer("pipeline_parallel_size", 1),
    "backend_args": _backend_args,
    "search": _text("search"),
    "search_step": _seconds("search_step", "a positive number"),
    "tokenizer": _text("tokenizer"),
    "max_connections": _integer("max_connections", 1),
    "request_timeout": _seconds("request_timeout", "a positive number of seconds"),
    "api_key_env": partial(env_name, flag("api_key_env")),
    "server_sampling": choice("server_sampling", SERVER_SAMPLING),
    "max_dissociation": _thresholds("dissociation", DISSOCIATION_BOUNDS),
    "max_delta_pr": _thresholds("delta_pr", DELTA_PR_BOUNDS),
    "min_retention": _thresholds("retention", RETENTION_BOUNDS),
    "gate_on": choice("gate_on", GATE_ON),
    "alpha": _alpha,
}


def normalize(name: str, value: Any) -> Any:
    """Field `name` of EvaluationSpec or GateSpec, checked and in its canonical type (CLI text such as
    `200`, `en,de` or `sw=0.2,*=0.1` is parsed); a ValueError naming the option otherwise."""
    return _NORMAL[name](value)


def _normalize_fields(spec: Any) -> None:
    for item in fields(spec):
        value = getattr(spec, item.name)
        normal = normalize(item.name, value)
        if normal is not value:
            object.__setattr__(spec, item.name, normal)


def field_defaults(cls: type) -> dict[str, Any]:
    """{field name: default} of a dataclass (a default_factory is called)."""
    return {item.name: item.default_factory() if callable(item.default_factory) else item.default
            for item in fields(cls)}


assert set(_NORMAL) == {item.name for cls in (EvaluationSpec, GateSpec) for item in fields(cls)}
# served.check_served reads "an option was used" as "differs from ServerSettings' default"
assert all(field_defaults(EvaluationSpec)[name] == getattr(ServerSettings(), name) for name in SERVER_OPTIONS)
