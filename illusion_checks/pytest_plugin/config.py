"""Every `--illusion-*` option: declared once, read once into a frozen `IllusionConfig`."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from illusion_checks.gates import DELTA_PR_BOUNDS, DISSOCIATION_BOUNDS, RETENTION_BOUNDS, parse_thresholds

ITEM_POLICIES = ("xfail", "fail", "off")
GATE_ON = ("point", "ci95")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DISTRACTORS = ("standard", "hard")
ABLATIONS = ("distractors_only", "unrelated")
ANSWER_SCOPES = ("line", "full")


def _choice(option: str, choices: tuple[str, ...], pattern: str | None = None) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices and not (pattern and re.fullmatch(pattern, value)):
            shown = ", ".join(choices) + (" or an indexed device such as cuda:0" if pattern else "")
            raise argparse.ArgumentTypeError(f"{option}: '{value}' is not one of {shown}")
        return value
    return parse


def _int(option: str, minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: '{value}' is not an integer") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{option}: {number} must be at least {minimum}")
        return number
    return parse


def parse_batch_size(value: str) -> int | str:
    """`auto` or a positive integer."""
    if value == "auto":
        return value
    return _int("--illusion-batch-size", 1)(value)


def parse_langs(value: str) -> tuple[str, ...]:
    """A comma-separated list of language codes."""
    langs = tuple(dict.fromkeys(lang.strip() for lang in value.split(",") if lang.strip()))
    if not langs:
        raise argparse.ArgumentTypeError(f"--illusion-langs: '{value}' names no language; expected e.g. en,de,sw")
    return langs


def parse_ablations(value: str) -> tuple[str, ...]:
    """Comma-separated CS ablations."""
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    bad = [name for name in names if name not in ABLATIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"--illusion-ablations: {', '.join(bad)} not one of {', '.join(ABLATIONS)}")
    return names


def _thresholds(option: str, bounds: tuple[float, float]) -> Callable[[str], dict[str, float]]:
    def parse(value: str) -> dict[str, float]:
        try:
            return parse_thresholds(option, value, bounds)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_flag(value: str) -> bool:
    """An ini boolean: true/false, yes/no, on/off, 1/0 (a typo must not silently mean false)."""
    word = str(value).strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise argparse.ArgumentTypeError(f"'{value}' is not a boolean; expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
    return word in TRUE_WORDS


@dataclass(frozen=True)
class Option:
    """One option: its CLI flag, ini key, parser, default and help text."""

    flag: str
    parse: Callable[[str], Any] | None
    default: Any
    help: str
    is_flag: bool = False
    is_path: bool = False  # in an ini file, a relative path is relative to the rootdir (like pytest's cache_dir)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS = (
    Option("--illusion-model", str, None, "reference model: alias (smollm2-135m, gemma3-270m), HF id, directory or .gguf"),
    Option("--illusion-compress", str, None, "compression spec, e.g. wanda:0.5, sparsegpt:2:4, magnitude:0.5, rtn-int4, bnb-int8"),
    Option("--illusion-compressed", str, None, "a prebuilt compressed model (HF id, directory or .gguf) instead of --illusion-compress"),
    Option("--illusion-calibration", str, "english", "calibration source: english (falls back to the embedded corpus), balanced, per-language, embedded (offline fixture passages), c4 (the paper's, online), or a .txt/.jsonl path"),
    Option("--illusion-calibration-samples", _int("--illusion-calibration-samples", 1), 128, "calibration sequences (nsamples)"),
    Option("--illusion-calibration-seqlen", _int("--illusion-calibration-seqlen", 8), 2048, "calibration sequence length (capped at the model's context)"),
    Option("--illusion-save-compressed", str, None, "save the compressed model (safetensors) to this directory", is_path=True),
    Option("--illusion-dataset", str, "fixtures", "fixtures (default), xquad, tydiqa, or a path (.jsonl, SQuAD .json[:LANG], or a directory)"),
    Option("--illusion-strict-data", None, False, "stop on a gold that is not in its passage (default: a note listing the items)", is_flag=True),
    Option("--illusion-langs", parse_langs, None, "comma-separated languages to evaluate (default: all in the data set)"),
    Option("--illusion-items", _int("--illusion-items", 1), 200, "items per language"),
    Option("--illusion-seed", _int("--illusion-seed", 0), 42, "seed for item sampling, options, sampling and bootstrap"),
    Option("--illusion-distractors", _choice("--illusion-distractors", DISTRACTORS), "standard", "MC distractors: standard (random) or hard (most similar)"),
    Option("--illusion-ablations", parse_ablations, (), "CS ablations to run: distractors_only,unrelated"),
    Option("--illusion-answer-scope", _choice("--illusion-answer-scope", ANSWER_SCOPES), "line",
           "line: the answer is the first non-empty generated line (default); full: the paper's literal "
           "scoring, normalized containment anywhere in the 32 new tokens"),
    Option("--illusion-chat-template", None, False, "wrap prompts in the tokenizer's chat template", is_flag=True),
    Option("--illusion-device", _choice("--illusion-device", DEVICES, r"(cuda|mps):\d+"), "auto", "auto (CUDA when present), cpu, cuda[:N], mps"),
    Option("--illusion-dtype", _choice("--illusion-dtype", DTYPES), "auto", "auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16"),
    Option("--illusion-batch-size", parse_batch_size, 16, "prompts per forward batch (decoding rows are amortised over it), or auto"),
    Option("--illusion-max-dissociation", _thresholds("--illusion-max-dissociation", DISSOCIATION_BOUNDS), None, "gate: max dissociation rate, FLOAT or LANG=FLOAT,...,*=FLOAT"),
    Option("--illusion-max-delta-pr", _thresholds("--illusion-max-delta-pr", DELTA_PR_BOUNDS), None, "gate: max delta_PR, FLOAT or LANG=FLOAT,..."),
    Option("--illusion-min-retention", _thresholds("--illusion-min-retention", RETENTION_BOUNDS), None, "gate: min share of both-correct items still produced"),
    Option("--illusion-gate-on", _choice("--illusion-gate-on", GATE_ON), "point", "gate on the point estimate or the conservative end of the 95% CI"),
    Option("--illusion-item-policy", _choice("--illusion-item-policy", ITEM_POLICIES), "xfail", "item checks: xfail (default), fail, or off"),
    Option("--illusion-report", str, "reports/illusion-report.html", "HTML fate report path", is_path=True),
    Option("--illusion-json", str, "reports/illusion-results.json", "results JSON path", is_path=True),
    Option("--illusion-cache-dir", str, None, "cache directory (default: $ILLUSION_CHECKS_CACHE/results)", is_path=True),
    Option("--illusion-no-cache", None, False, "neither read nor write the results cache", is_flag=True),
    Option("--illusion-from-results", str, None, "re-apply gates and re-render the report from a results JSON, loading no model", is_path=True),
    Option("--illusion-trust-remote-code", None, False, "allow model code from the hub (off by default)", is_flag=True),
    Option("--illusion-allow-pickle", None, False, "allow pickle (.bin) checkpoints (off by default: they can run code)", is_flag=True),
    Option("--illusion-no-reachability", None, False, "skip beam-5 and sampling probes", is_flag=True),
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option on the CLI and as an ini key (the CLI wins)."""
    group = parser.getgroup("illusion", "illusion-checks: gate compressed LLMs on paired production/recognition probes")
    for option in OPTIONS:
        help_text = option.help.replace("%", "%%")  # argparse %-formats help strings ("95% CI")
        if option.is_flag:
            group.addoption(option.flag, action="store_true", default=None, dest=option.dest, help=help_text)
        else:
            group.addoption(option.flag, action="store", default=None, dest=option.dest, help=help_text)
        parser.addini(option.dest, help=option.help, type="string", default=None)


@dataclass(frozen=True)
class IllusionConfig:
    """The run's configuration, read from pytest once."""

    model: str | None = None
    compress: str | None = None
    compressed: str | None = None
    calibration: str = "english"
    calibration_samples: int = 128
    calibration_seqlen: int = 2048
    save_compressed: str | None = None
    dataset: str = "fixtures"
    strict_data: bool = False
    langs: tuple[str, ...] | None = None
    items: int = 200
    seed: int = 42
    distractors: str = "standard"
    ablations: tuple[str, ...] = ()
    answer_scope: str = "line"
    chat_template: bool = False
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | str = 16
    max_dissociation: dict[str, float] | None = None
    max_delta_pr: dict[str, float] | None = None
    min_retention: dict[str, float] | None = None
    gate_on: str = "point"
    item_policy: str = "xfail"
    report: str = "reports/illusion-report.html"
    json: str = "reports/illusion-results.json"
    cache_dir: str | None = None
    no_cache: bool = False
    from_results: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    no_reachability: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.model or self.from_results)


def _raw_value(config: pytest.Config, option: Option) -> tuple[Any, str]:
    cli = config.getoption(option.dest, default=None)
    if cli is not None:
        return cli, option.flag
    ini = config.getini(option.dest)
    if ini in (None, ""):
        return None, option.dest
    if option.is_path and not Path(ini).expanduser().is_absolute():
        # Relative to the rootdir, not the cwd: running pytest from a subdirectory must not
        # scatter reports and caches around the tree.
        ini = str(config.rootpath / ini)
    return ini, f"{option.dest} (ini)"


def read_config(config: pytest.Config) -> IllusionConfig:
    """Parse and validate every option; a bad value raises pytest.UsageError naming it."""
    if config.getoption("help", False) or config.getoption("markers", False):
        return IllusionConfig()  # --help and --markers run nothing: they must work whatever the options say
    values: dict[str, Any] = {}
    on_cli: list[str] = []
    for option in OPTIONS:
        raw, where = _raw_value(config, option)
        if raw is None:
            continue
        if where == option.flag:
            on_cli.append(option.flag)
        parse = parse_flag if option.is_flag else option.parse
        try:
            values[option.dest.removeprefix("illusion_")] = raw if isinstance(raw, bool) or parse is None else parse(raw)
        except (argparse.ArgumentTypeError, ValueError) as error:
            message = str(error)
            if where.endswith("(ini)"):
                message = f"{where}: {message.split(': ', 1)[-1]}"
            raise pytest.UsageError(message) from None
    cfg = IllusionConfig(**values)
    if not hasattr(config, "workerinput"):  # the xdist controller has checked these for its workers
        _check_combination(cfg, on_cli)
    return cfg


def _check_combination(cfg: IllusionConfig, on_cli: list[str]) -> None:
    if not cfg.active:
        # A gate option on the command line that silently does nothing would let a release pass
        # unchecked; in an ini file it may be shared setup for runs that pass the model later.
        if on_cli:
            raise pytest.UsageError(
                f"{on_cli[0]} has no effect without --illusion-model (or --illusion-from-results); pass one of them"
            )
        return
    if cfg.compress and cfg.compressed:
        raise pytest.UsageError("--illusion-compress and --illusion-compressed exclude each other; pass one")
    if cfg.from_results:
        if not Path(cfg.from_results).is_file():
            raise pytest.UsageError(f"--illusion-from-results: file '{cfg.from_results}' does not exist")
        return
    if not (cfg.compress or cfg.compressed):
        raise pytest.UsageError("--illusion-model needs --illusion-compress=SPEC or --illusion-compressed=MODEL")
    if cfg.compress:
        # Imported only here: the compress package pulls in torch, which an inactive run never needs.
        from illusion_checks.compress.spec import parse_spec

        try:
            parse_spec(cfg.compress)
        except ValueError as error:
            raise pytest.UsageError(f"--illusion-compress: {error}") from None
    from illusion_checks.compress.calibration import SOURCES

    if cfg.calibration not in SOURCES and not Path(cfg.calibration).is_file():
        raise pytest.UsageError(
            f"--illusion-calibration: '{cfg.calibration}' is not {', '.join(SOURCES)} or an existing .txt/.jsonl file"
        )
