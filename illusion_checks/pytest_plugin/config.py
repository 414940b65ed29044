"""Every `--illusion-*` option: declared once, read once into a frozen `IllusionConfig`.

The options that shape the evaluation and the gates are fields of `spec.EvaluationSpec` and
`spec.GateSpec`, which own their defaults and their checks (`spec.normalize`); this module maps
them to command-line options and ini keys, and adds the pytest-only settings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import pytest

from illusion_checks.spec import EvaluationSpec, GateSpec, choice, field_defaults, normalize

ITEM_POLICIES = ("xfail", "fail", "off")


@dataclass(frozen=True)
class IllusionConfig:
    """The run's configuration, read from pytest once: the evaluation, the gates, and what only the
    pytest plugin does (item checks, output files, re-gating a results file)."""

    spec: EvaluationSpec = field(default_factory=EvaluationSpec)
    gates: GateSpec = field(default_factory=GateSpec)
    item_policy: str = "xfail"
    report: str = "reports/illusion-report.html"
    json: str = "reports/illusion-results.json"
    from_results: str | None = None
    progress_interval: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.spec.model or self.from_results)


SPEC_FIELDS = frozenset(item.name for item in fields(EvaluationSpec))
GATE_FIELDS = frozenset(item.name for item in fields(GateSpec))
PYTEST_FIELDS = frozenset(field_defaults(IllusionConfig)) - {"spec", "gates", "extra"}
DEFAULTS = {**field_defaults(EvaluationSpec), **field_defaults(GateSpec),
            **{name: value for name, value in field_defaults(IllusionConfig).items() if name in PYTEST_FIELDS}}

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_seconds(value: str) -> float:
    """A number of seconds, 0 or more (progress lines may come with every step)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"--illusion-progress-interval: '{value}' is not a number of seconds (0 or more)")
    return seconds


def parse_flag(value: str) -> bool:
    """An ini boolean: true/false, yes/no, on/off, 1/0 (a typo must not silently mean false)."""
    word = str(value).strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"'{value}' is not a boolean; expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
    return word in TRUE_WORDS


@dataclass(frozen=True)
class Option:
    """One option: its CLI flag, ini key and help text. Its default is its field's (spec.EvaluationSpec,
    spec.GateSpec or IllusionConfig); a spec field's text is parsed and checked by `spec.normalize`,
    a pytest-only one by `parse`."""

    flag: str
    help: str
    parse: Callable[[str], Any] | None = None  # pytest-only options
    is_flag: bool = False
    is_path: bool = False  # in an ini file, a relative path is relative to the rootdir (like pytest's cache_dir)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def name(self) -> str:
        """The field it sets."""
        return self.dest.removeprefix("illusion_")

    @property
    def default(self) -> Any:
        return DEFAULTS[self.name]

    @property
    def help_text(self) -> str:
        """The help, with the default unless it is unset or the help already says it."""
        default = self.default
        if default is None or default is False or default == () or "default" in self.help:
            return self.help
        return f"{self.help} (default: {default})"

    def read(self, raw: Any) -> Any:
        """The field's value from the CLI or ini text (a CLI flag is already True); ValueError naming the option."""
        value = parse_flag(raw) if self.is_flag and not isinstance(raw, bool) else raw
        if self.name in PYTEST_FIELDS:
            return self.parse(value) if self.parse else value
        return normalize(self.name, value)


OPTIONS = (
    Option("--illusion-model", "reference model: alias (smollm2-135m, gemma3-270m), HF id, directory, .gguf, or a "
                               "server http(s)://HOST[:PORT]/v1[#MODEL]"),
    Option("--illusion-compress", "compression spec, e.g. wanda:0.5, sparsegpt:2:4, magnitude:0.5, rtn-int4, bnb-int8, "
                                  "quanto-int8, quanto-int4 (quanto: hf backend only, never saved); "
                                  "several, comma-separated, sweep them (the reference is probed once)"),
    Option("--illusion-search", "search the highest sparsity whose gates all pass, METHOD:LOW..HIGH (e.g. "
                                "wanda:0.3..0.8), by bisection over the grid"),
    Option("--illusion-search-step", "the search grid's step"),
    Option("--illusion-compressed", "a prebuilt compressed model (HF id, directory, .gguf, or a server "
                                    "http(s)://HOST[:PORT]/v1[#MODEL]) instead of --illusion-compress"),
    Option("--illusion-calibration", "calibration source: english (falls back to the embedded corpus), balanced, per-language, embedded (offline fixture passages), c4 (the paper's, online), or a .txt/.jsonl path"),
    Option("--illusion-calibration-samples", "calibration sequences (nsamples)"),
    Option("--illusion-calibration-seqlen", "calibration sequence length (capped at the model's context)"),
    Option("--illusion-save-compressed", "save the compressed model (safetensors) to this directory", is_path=True),
    Option("--illusion-dataset", "fixtures (default), xquad, tydiqa, or a path (.jsonl, SQuAD .json[:LANG], or a directory)"),
    Option("--illusion-strict-data", "stop on a gold that is not in its passage (default: a note listing the items)", is_flag=True),
    Option("--illusion-langs", "comma-separated languages to evaluate (default: all in the data set)"),
    Option("--illusion-items", "items per language"),
    Option("--illusion-seed", "seed for item sampling, options, sampling and bootstrap"),
    Option("--illusion-distractors", "MC distractors: standard (random) or hard (most similar)"),
    Option("--illusion-ablations", "CS ablations to run: distractors_only,unrelated"),
    Option("--illusion-answer-scope",
           "line: the answer is the first non-empty generated line (default); full: the paper's literal "
           "scoring, normalized containment anywhere in the 32 new tokens"),
    Option("--illusion-chat-template", "wrap prompts in the tokenizer's chat template (with enable_thinking=False, "
           "where the template takes it)", is_flag=True),
    Option("--illusion-thinking", "a reasoning model's think span: off (default: the template's non-thinking mode, "
           "as the paper) or on (the budget grows by 1024 tokens; the answer and rank are read after </think>)"),
    Option("--illusion-backend", "model backend: hf (in-process transformers) or vllm (vLLM: the engine you deploy "
                                 "on; needs vLLM, see README)"),
    Option("--illusion-tensor-parallel-size", "vllm backend: GPUs each model is split across (tensor parallelism)"),
    Option("--illusion-pipeline-parallel-size", "vllm backend: pipeline stages (e.g. nodes, with Ray)"),
    Option("--illusion-backend-args", "vllm backend: a JSON object of extra vllm.LLM(...) arguments, e.g. "
                                      "'{\"gpu_memory_utilization\": 0.85, \"max_model_len\": 4096}'"),
    Option("--illusion-tokenizer", "served models: a local tokenizer (alias, directory or hub id) for a server "
                                   "without /tokenize"),
    Option("--illusion-max-connections", "served models: requests in flight per server"),
    Option("--illusion-request-timeout", "served models: seconds one request may take before the run stops"),
    Option("--illusion-api-key-env", "served models: the environment variable holding the API key (sent as a "
                                     "Bearer token; never printed, cached or written)"),
    Option("--illusion-server-sampling", "served models: neutral (default: every request states no top-k, min-p or "
                                         "penalties, as the local reference decodes) or server (both models served, "
                                         "each with its own generation-config defaults: as deployed)"),
    Option("--illusion-device", "auto (CUDA when present), cpu, cuda[:N], mps"),
    Option("--illusion-dtype", "auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16"),
    Option("--illusion-batch-size", "prompts per forward batch (decoding rows are amortised over it), or auto"),
    Option("--illusion-max-dissociation", "gate: max dissociation rate, FLOAT or LANG=FLOAT,...,*=FLOAT"),
    Option("--illusion-max-delta-pr", "gate: max delta_PR, FLOAT or LANG=FLOAT,..."),
    Option("--illusion-min-retention", "gate: min share of both-correct items still produced"),
    Option("--illusion-gate-on", "point: gate on the point estimate; ci95: on the conservative end of the 95% CI; "
                                 "mcnemar: fail each language (and overall) whose FF drop is significant by McNemar's "
                                 "exact test at --illusion-alpha (takes no threshold)"),
    Option("--illusion-alpha", "significance level of --illusion-gate-on=mcnemar and of each gate's minimum detectable "
                               "effect (80% power)"),
    Option("--illusion-item-policy", "item checks: xfail (default), fail, or off", choice("item_policy", ITEM_POLICIES)),
    Option("--illusion-report", "HTML fate report path", is_path=True),
    Option("--illusion-json", "results JSON path", is_path=True),
    Option("--illusion-progress-interval", "in a log (no terminal, or CI set): seconds between a phase's progress "
                                           "lines, at least; a running phase prints one every 2 minutes regardless",
           parse_seconds),
    Option("--illusion-cache-dir", "cache directory (default: $ILLUSION_CHECKS_CACHE/results)", is_path=True),
    Option("--illusion-no-cache", "neither read nor write the results cache", is_flag=True),
    Option("--illusion-from-results", "re-apply gates and re-render the report from a results JSON, loading no model", is_path=True),
    Option("--illusion-trust-remote-code", "allow model code from the hub (off by default)", is_flag=True),
    Option("--illusion-allow-pickle", "allow pickle (.bin) checkpoints (off by default: they can run code)", is_flag=True),
    Option("--illusion-no-reachability", "skip beam-5 and sampling probes", is_flag=True),
    Option("--illusion-noise-floor", "probe the reference a second time at another batch size and item order, and "
                                     "record the fate changes it makes against itself (the A/A noise floor)", is_flag=True),
)
# One option per field: a field without an option (or an option without a field) is a bug.
assert sorted(option.name for option in OPTIONS) == sorted(DEFAULTS), "OPTIONS and the spec fields disagree"


def add_options(parser: pytest.Parser) -> None:
    """Register every option on the CLI and as an ini key (the CLI wins)."""
    group = parser.getgroup("illusion", "illusion-checks: gate compressed LLMs on paired production/recognition probes")
    for option in OPTIONS:
        help_text = option.help_text.replace("%", "%%")  # argparse %-formats help strings ("95% CI")
        if option.is_flag:
            group.addoption(option.flag, action="store_true", default=None, dest=option.dest, help=help_text)
        else:
            group.addoption(option.flag, action="store", default=None, dest=option.dest, help=help_text)
        parser.addini(option.dest, help=option.help_text, type="string", default=None)


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


def make_config(values: dict[str, Any]) -> IllusionConfig:
    """An IllusionConfig from {field name: value}, spec, gate and pytest-only fields alike."""
    return IllusionConfig(spec=EvaluationSpec(**{k: v for k, v in values.items() if k in SPEC_FIELDS}),
                          gates=GateSpec(**{k: v for k, v in values.items() if k in GATE_FIELDS}),
                          **{k: v for k, v in values.items() if k in PYTEST_FIELDS})


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
        try:
            values[option.name] = option.read(raw)
        except ValueError as error:
            message = str(error)
            if where.endswith("(ini)"):
                message = f"{where}: {message.split(': ', 1)[-1]}"
            raise pytest.UsageError(message) from None
    try:
        cfg = make_config(values)
    except ValueError as error:  # a check across options (GateSpec: mcnemar takes no threshold)
        raise pytest.UsageError(str(error)) from None
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
    if cfg.from_results:
        if not Path(cfg.from_results).is_file():
            raise pytest.UsageError(f"--illusion-from-results: file '{cfg.from_results}' does not exist")
        return
    try:
        cfg.spec.check()
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
