"""One evaluation: the data and every check before a model loads, the calibration texts, the outcome
cache keys, both models' outcomes (cached per model; the models themselves are `lifecycle.Models`'),
and the results with their `config` block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from illusion_checks import __version__
from illusion_checks.backends import engine, served_engine
from illusion_checks.backends.base import Engine
from illusion_checks.cache import OutcomeCache, cache_key
from illusion_checks.compress.calibration import calibration_pool, calibration_texts
from illusion_checks.compress.spec import parse_spec
from illusion_checks.fates import gold_cut
from illusion_checks.datasets import Dataset, DatasetError, golds_not_in_context, load_dataset
from illusion_checks.lifecycle import Calibration, Compression, Log, Models, RunStats
from illusion_checks.options import flag
from illusion_checks.noise_floor import ORDER, noise_floor, other_batch_size
from illusion_checks.probing import PreparedItem, paired_item, prepare_items, probe_settings
from illusion_checks.records import ItemRecord, Outcome
from illusion_checks.results import build_results, note
from illusion_checks.served import is_served, settings_of
from illusion_checks.spec import EvaluationSpec, Progress

__all__ = ["Evaluation", "Log", "RunStats", "probe_settings"]


def _listed(ids: list[str], limit: int = 10) -> str:
    """Item ids for a one-line message: the first `limit`, then how many more."""
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"


@dataclass(frozen=True)
class _Setup:
    """What every spec of one evaluation shares."""
    dataset: Dataset
    prepared: list[PreparedItem]
    items_by_language: dict[str, int]
    ids: list[str]
    ref_source: str
    ref_fingerprint: str
    base: dict[str, Any]


class Evaluation:
    """Evaluate the spec's reference and compressed models on the same prepared items."""

    def __init__(self, cfg: EvaluationSpec, cache: OutcomeCache, progress: Progress | None = None,
                 log: Log | None = None) -> None:
        self.cfg, self.cache = cfg, cache
        self.log = log or (lambda message: None)
        self.stats = RunStats()
        self.progress = self.stats.timer(progress or (lambda phase, done, total: None))
        self.settings = probe_settings(cfg)
        self.engine = engine(cfg.backend)  # loads, compresses and saves local models
        # A model given as a server URL is reached through its own engine, whichever --illusion-backend is.
        self.served = {role: served_engine(settings_of(cfg), flag(field), cfg.trust_remote_code)
                       for role, field in (("reference", "model"), ("compressed", "compressed"))
                       if is_served(getattr(cfg, field))}
        self.engines: dict[str, Engine] = {"reference": self.served.get("reference", self.engine),
                                           "compressed": self.served.get("compressed", self.engine)}
        self.models = Models(cfg, self.engine, self.engines, self.settings, self.stats, self.progress, self.log)
        self.notes: list[dict[str, Any]] = []
        self._prepared_setup: _Setup | None = None
        self._calibrations: dict[str | None, Calibration | None] = {}
        self._memo: dict[str, list[Outcome]] = {}  # by cache key: a sweep without a cache probes the reference once
        self._logged: set[str] = set()

    def note(self, kind: str, lang: str | None, message: str) -> None:
        """Record something the run did differently from what was asked, once: the results'
        `notes`, which the terminal summary and the report show."""
        if all(n["message"] != message for n in self.notes):
            self.notes.append(note(kind, lang, message))

    def run(self) -> dict[str, Any]:
        """The results object (schema v1) of the spec's compressed model (its first spec)."""
        specs = self.cfg.compress_specs
        self.check_specs(specs[:1] or [None])
        return self.run_spec(specs[0] if specs else None)

    def check_specs(self, specs: Sequence[str | None]) -> None:
        """Everything that can fail, checked before a model loads or is probed: the data, both model
        sources, each spec against the model's widths and its calibration texts (resolved once, here,
        and reused). A long reference probe must not end on an input wrong from the start."""
        setup = self._setup()
        for spec in specs:
            if spec:
                self.engine.check_spec_fits(spec, setup.ref_source, self.cfg.trust_remote_code)
            self._calibrations[spec] = self._calibration(spec, setup.dataset, setup.prepared)

    def run_spec(self, compress: str | None) -> dict[str, Any]:
        """The results (schema v1) of one compressed model (`compress`, else --illusion-compressed). The reference
        is loaded and probed once per Evaluation: a sweep compresses each spec from it in turn."""
        setup = self._setup()
        if compress not in self._calibrations:
            self.check_specs([compress])
        compression = self.models.compression(compress, self._calibrations[compress],
                                              (setup.ref_source, setup.ref_fingerprint))
        self._log_servers()
        ref_key = {**setup.base, "role": "reference", "model": setup.ref_fingerprint}
        comp_key = {**setup.base, "role": "compressed", "model": compression.fingerprint}
        reference = self._outcomes("reference", ref_key, setup.ids,
                                   lambda: self.models.probe(self.models.reference(), setup.prepared, "probe reference"))
        floor = self._noise_floor(setup, ref_key, reference) if self.cfg.noise_floor else None
        compressed = self._outcomes("compressed", comp_key, setup.ids,
                                    lambda: self.models.probe_compressed(setup.prepared, compression))
        if self.cfg.save_compressed and compress:
            self.models.save_unsaved(compression)
        items = [paired_item(p, r, c) for p, r, c in zip(setup.prepared, reference, compressed)]
        self._note_gold_cut(items)
        return build_results(self._config(setup, compression), items, notes=list(self.notes), noise_floor=floor)

    def _noise_floor(self, setup: _Setup, ref_key: dict[str, Any], reference: list[Outcome]) -> dict[str, Any]:
        """The reference probed again, at another batch size with the items reversed, read against
        its first run (`noise_floor.py`); cached like any run, so a sweep probes it once."""
        size = other_batch_size(self.settings.decode.batch_size)
        key = {**ref_key, "role": "reference again", "batch_size": size, "order": ORDER}
        again = self._outcomes("reference", key, setup.ids[::-1], lambda: self.models.probe(
            self.models.reference(), setup.prepared[::-1], "probe reference again (noise floor)", size))[::-1]
        return noise_floor([paired_item(p, r, a) for p, r, a in zip(setup.prepared, reference, again)], size)

    def _note_gold_cut(self, items: list[ItemRecord]) -> None:
        """A note per language whose FF prompts lost gold spans to the token cap (Appendix B(6))."""
        by_lang: dict[str, list[str]] = {}
        for item in items:
            if gold_cut(item.reference.truncation) or gold_cut(item.compressed.truncation):
                by_lang.setdefault(item.lang, []).append(item.id)
        cap = self.settings.prompts.max_prompt_tokens
        for lang, ids in by_lang.items():
            self.note("truncation", lang, f"{lang}: {len(ids)} item(s) lost the gold span when the FF prompt's passage "
                                          f"was cut to {cap} tokens ({_listed(ids)}); they are not counted as "
                                          "both-correct")

    def _setup(self) -> _Setup:
        """The data, the prepared items and the reference's identity: once per Evaluation."""
        if self._prepared_setup is None:
            cfg = self.cfg
            dataset = load_dataset(cfg.dataset, list(cfg.langs) if cfg.langs else None)
            prepared = prepare_items(dataset, list(cfg.langs) if cfg.langs else None, self.settings, self.note)
            items_by_language = self._check_data(dataset, prepared)
            ids = [f"{p.item.lang}/{p.item.id}" for p in prepared]
            passages = {p.item.lang: p.item.context for p in reversed(prepared)}  # each language's first
            for role, served in self.served.items():
                served.check_tokenizer(str(cfg.model if role == "reference" else cfg.compressed), passages)
            ref_source, ref_fingerprint = self.models.resolve("reference", cfg.model)
            # The batch size moves scores by round-off and can flip a sampled token (README "Speed"),
            # so outcomes probed at another batch size are not reused.
            base = {"dataset": dataset.sha256, "ids": ids, "probes": self.settings.to_dict(),
                    "batch_size": self.settings.decode.batch_size,
                    "dtype": cfg.dtype, "device": self._device_type(), "version": __version__,
                    "backend": self._backend_identity()}
            self._prepared_setup = _Setup(dataset, prepared, items_by_language, ids, ref_source, ref_fingerprint, base)
        return self._prepared_setup

    def _config(self, setup: _Setup, compression: Compression) -> dict[str, Any]:
        cfg, prepared = self.cfg, setup.prepared
        config = {
            "reference": {"name": cfg.model, "fingerprint": setup.ref_fingerprint},
            "compressed": self._compressed_block(compression),
            "dataset": {"name": setup.dataset.name, "sha256": setup.dataset.sha256,
                        "langs": sorted({p.item.lang for p in prepared}), "items_per_language": cfg.items,
                        "items_by_language": setup.items_by_language, "distractors": cfg.distractors},
            "seed": cfg.seed, "probes": self.settings.to_dict(), "device": self._device_type(), "dtype": cfg.dtype,
            "backend": self._backend_identity(),
        }
        for role, field in (("reference", "model"), ("compressed", "compressed")):
            if is_served(getattr(cfg, field)):
                config[role]["server"] = self.engines[role].describe(getattr(cfg, field))
        return config

    def _compressed_block(self, compression: Compression) -> dict[str, Any]:
        """`config.compressed`: the prebuilt model's name, or the reference's with the spec."""
        cfg = self.cfg
        if cfg.compressed:
            return {"name": cfg.compressed, "spec": None, "calibration": None, "fingerprint": compression.fingerprint}
        block = {"name": f"{cfg.model}+{compression.spec}", "spec": compression.spec,
                 "calibration": cfg.calibration if compression.calibration is not None else None,
                 "fingerprint": compression.fingerprint}
        return block if compression.llmc is None else {**block, "llmc": compression.llmc}

    def _log_servers(self) -> None:
        """What each served model can measure: exact, approximate or unavailable, probe by probe."""
        for role, source in (("reference", self.cfg.model), ("compressed", self.cfg.compressed)):
            if is_served(source) and role not in self._logged:
                self._logged.add(role)
                server = self.engines[role].describe(source)
                self.log(f"{role} served by {server['url']} (model '{server['model']}', {server['version'] or 'version unknown'}):")
                for probe, how in server["capabilities"].items():
                    self.log(f"  {probe}: {how}")

    def _check_data(self, dataset: Dataset, prepared: list[PreparedItem]) -> dict[str, int]:
        """The evaluated items per language. A gold missing from its passage is noted (an error under
        --illusion-strict-data), and so is a language with fewer items than --illusion-items."""
        missing = golds_not_in_context([p.item for p in prepared])
        if missing and self.cfg.strict_data:
            first = missing[0]
            more = f"; {len(missing) - 1} more: {_listed([i.id for i in missing[1:]])}" if len(missing) > 1 else ""
            raise DatasetError(f"--illusion-strict-data: data set '{dataset.name}': item {first.id!r} ({first.lang}): "
                               f"gold {first.gold!r} is not in its passage, so it is not extractive QA{more}")
        counts: dict[str, int] = {}
        for p in prepared:
            counts[p.item.lang] = counts.get(p.item.lang, 0) + 1
        for lang in sorted(counts):
            ids = [item.id for item in missing if item.lang == lang]
            if ids:
                has = "item has a gold that is not in its passage" if len(ids) == 1 else \
                    "items have a gold that is not in their passage"
                self.note("data", lang, f"{lang}: {len(ids)} evaluated {has} ({_listed(ids)}): not extractive "
                                        "QA, evaluated anyway (--illusion-strict-data stops the run instead)")
            if counts[lang] < self.cfg.items:
                self.note("data", lang, f"{lang}: the data set has {counts[lang]} items, fewer than "
                                        f"--illusion-items={self.cfg.items}; all {counts[lang]} are evaluated")
        return counts

    def _device_type(self) -> str:
        return self.engine.device_type(self.cfg.device)

    def _backend_identity(self) -> dict[str, Any]:
        """The engine and its version: in the cache key (another engine's numerics are not reused)
        and in the results' config."""
        cfg = self.cfg
        return {"name": self.engine.name, "version": self.engine.version(),
                "parallel": [cfg.tensor_parallel_size, cfg.pipeline_parallel_size], "args": cfg.backend_args.to_dict()}

    def _outcomes(self, role: str, key_parts: dict[str, Any], ids: list[str],
                  compute: Callable[[], list[Outcome]]) -> list[Outcome]:
        key = cache_key(key_parts)
        if key not in self._memo:
            self._memo[key] = self._cached_or_computed(role, key, key_parts, ids, compute)
        return self._memo[key]

    def _cached_or_computed(self, role: str, key: str, key_parts: dict[str, Any], ids: list[str],
                            compute: Callable[[], list[Outcome]]) -> list[Outcome]:
        """The cache stores outcomes as the results JSON writes them; they are records everywhere else."""
        if not self.cfg.no_cache:
            cached = self.cache.get(key, ids)
            if cached is not None:
                setattr(self.stats, f"{role}_cached", True)
                self.log(f"{role} outcomes: from cache ({key[:12]})")
                return [Outcome.from_dict(outcome) for outcome in cached]
        outcomes = compute()
        if not self.cfg.no_cache:
            self.cache.put(key, ids, [outcome.to_dict() for outcome in outcomes], key_parts)
        return outcomes

    def _calibration(self, spec: str | None, dataset: Dataset, prepared: list[PreparedItem]) -> Calibration | None:
        """The calibration texts by key, or None when the spec needs none (or a prebuilt model is given)."""
        cfg = self.cfg
        if cfg.compressed or spec is None or not parse_spec(spec).needs_calibration:
            return None
        pool, evaluated = calibration_pool(dataset, [p.item for p in prepared])
        langs = sorted({p.item.lang for p in prepared})
        return calibration_texts(cfg.calibration, pool, evaluated, langs, cfg.seed, nsamples=cfg.calibration_samples,
                                 notice=lambda lang, message: self.note("calibration", lang, message))
