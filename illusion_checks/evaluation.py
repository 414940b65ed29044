"""One evaluation: data, reference, compression, probes for both models, results; cached per model."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from illusion_checks import __version__
from illusion_checks.backends import engine, served_engine
from illusion_checks.backends.base import Backend, CompressOptions, Engine, LoadOptions
from illusion_checks.cache import OutcomeCache, cache_key
from illusion_checks.datasets import Dataset, DatasetError, golds_not_in_context, load_dataset
from illusion_checks.probing import PreparedItem, item_record, prepare_items, probe_settings
from illusion_checks.results import build_results
from illusion_checks.served import is_served, settings_of
from illusion_checks.spec import EvaluationSpec, Progress, flag

Log = Callable[[str], None]


@dataclass
class RunStats:
    """What the run actually did: lets tests and users see cache hits and where time went."""

    models_loaded: int = 0
    reference_cached: bool = False
    compressed_cached: bool = False
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def timer(self, progress: Progress) -> Progress:
        """Wrap a progress callback so each top-level phase's wall time is recorded."""
        marks: dict[str, float] = {}

        def update(phase: str, done: int, total: int) -> None:
            head = phase.split(": ")[0].split(" (")[0]  # "probe compressed [wanda:0.5]: CS" -> its phase
            start = marks.setdefault(head, time.perf_counter())
            self.phase_seconds[head] = time.perf_counter() - start
            progress(phase, done, total)
        return update


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
        self.engines = {"reference": self._engine_for("model"),
                        "compressed": self._engine_for("compressed") if cfg.compressed else self.engine}
        self.notes: list[dict[str, Any]] = []
        self._reference: Backend | None = None
        self._compressed_fingerprint: str | None = None
        self._saved: set[str] = set()  # calibration labels whose compressed model this run saved or found saved
        self._prepared_setup: _Setup | None = None
        self._calibrations: dict[str | None, dict[str, list[str]] | None] = {}
        self._memo: dict[str, list[dict]] = {}  # outcomes by cache key: a sweep without a cache probes the reference once
        self._logged: set[str] = set()

    def _engine_for(self, field: str) -> Engine:
        cfg = self.cfg
        if is_served(getattr(cfg, field)):
            return served_engine(settings_of(cfg), flag(field), cfg.trust_remote_code)
        return self.engine

    def note(self, kind: str, lang: str | None, message: str) -> None:
        """Record something the run did differently from what was asked, once: the results'
        `notes`, which the terminal summary and the report show."""
        from illusion_checks.results import note

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
            with self._spec(spec):
                if spec:
                    self.engine.check_spec_fits(spec, setup.ref_source, self.cfg.trust_remote_code)
                self._calibrations[spec] = self._calibration(setup.dataset, setup.prepared)

    def run_spec(self, compress: str | None) -> dict[str, Any]:
        """The results (schema v1) of one compressed model (`compress`, else --illusion-compressed). The reference
        is loaded and probed once per Evaluation: a sweep compresses each spec from it in turn."""
        setup = self._setup()
        if compress not in self._calibrations:
            self.check_specs([compress])
        with self._spec(compress):
            cfg, calibration = self.cfg, self._calibrations[compress]
            compressed_block, comp_key = self._compressed_identity(calibration, setup.ref_fingerprint, setup.base)
            self._compressed_fingerprint = compressed_block["fingerprint"]
            self._log_servers()
            ref_key = {**setup.base, "role": "reference", "model": setup.ref_fingerprint}
            reference = self._outcomes("reference", ref_key, setup.ids,
                                       lambda: self._probe(self._load_reference(), setup.prepared, "probe reference"))
            compressed = self._outcomes("compressed", comp_key, setup.ids,
                                        lambda: self._probe_compressed(setup.prepared, calibration))
            if cfg.save_compressed and cfg.compress:
                self._save_unsaved(calibration)
            items = [item_record(p, r, c) for p, r, c in zip(setup.prepared, reference, compressed)]
            return build_results(self._config(setup, compressed_block), items, notes=list(self.notes))

    @contextmanager
    def _spec(self, compress: str | None) -> Iterator[None]:
        """Within it, `self.cfg` is the spec with this one compression spec."""
        base = self.cfg
        self.cfg = replace(base, compress=compress)
        try:
            yield
        finally:
            self.cfg = base

    def _setup(self) -> _Setup:
        """The data, the prepared items and the reference's identity: once per Evaluation."""
        if self._prepared_setup is None:
            cfg = self.cfg
            dataset = load_dataset(cfg.dataset, list(cfg.langs) if cfg.langs else None)
            prepared = prepare_items(dataset, list(cfg.langs) if cfg.langs else None, self.settings, self.note)
            items_by_language = self._check_data(dataset, prepared)
            ids = [f"{p.item.lang}/{p.item.id}" for p in prepared]
            ref_source, ref_fingerprint = self._resolve("reference", cfg.model)
            # The batch size moves scores by round-off and can flip a sampled token (README "Speed"),
            # so outcomes probed at another batch size are not reused.
            base = {"dataset": dataset.sha256, "ids": ids, "probes": self.settings.to_dict(),
                    "batch_size": self.settings.decode.batch_size,
                    "dtype": cfg.dtype, "device": self._device_type(), "version": __version__,
                    "backend": self._backend_identity()}
            self._prepared_setup = _Setup(dataset, prepared, items_by_language, ids, ref_source, ref_fingerprint, base)
        return self._prepared_setup

    def _config(self, setup: _Setup, compressed_block: dict[str, Any]) -> dict[str, Any]:
        cfg, prepared = self.cfg, setup.prepared
        config = {
            "reference": {"name": cfg.model, "fingerprint": setup.ref_fingerprint},
            "compressed": compressed_block,
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

    def _load_options(self) -> LoadOptions:
        cfg = self.cfg
        return LoadOptions(cfg.device, cfg.dtype, cfg.trust_remote_code, cfg.allow_pickle, seed=cfg.seed,
                           parallel=(cfg.tensor_parallel_size, cfg.pipeline_parallel_size),
                           engine_args=tuple(sorted(cfg.backend_args.to_dict().items())))

    def _outcomes(self, role: str, key_parts: dict[str, Any], ids: list[str], compute: Callable[[], list[dict]]) -> list[dict]:
        key = cache_key(key_parts)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = self._cached_or_computed(role, key, key_parts, ids, compute)
        return self._memo[key]

    def _cached_or_computed(self, role: str, key: str, key_parts: dict[str, Any], ids: list[str],
                            compute: Callable[[], list[dict]]) -> list[dict]:
        if not self.cfg.no_cache:
            cached = self.cache.get(key, ids)
            if cached is not None:
                setattr(self.stats, f"{role}_cached", True)
                self.log(f"{role} outcomes: from cache ({key[:12]})")
                return cached
        outcomes = compute()
        if not self.cfg.no_cache:
            self.cache.put(key, ids, outcomes, key_parts)
        return outcomes

    def _load_reference(self) -> Backend:
        if self._reference is None:
            self._reference = self._load("reference", self.cfg.model)
        return self._reference

    def _resolve(self, role: str, source: str) -> tuple[str, str]:
        """The loadable source and fingerprint: a phase, as a GGUF is converted once and weights are hashed."""
        self.progress(f"prepare {role}", 0, 1)
        resolved = self.engines[role].resolve(source, self.cfg.allow_pickle)
        self.progress(f"prepare {role}", 1, 1)
        return resolved

    def _load(self, role: str, source: str) -> Backend:
        self.progress(f"load {role}", 0, 1)
        backend = self.engines[role].load(source, self._load_options())
        self.stats.models_loaded += 1
        self.progress(f"load {role}", 1, 1)
        return backend

    def _probe(self, backend: Backend, prepared: list[PreparedItem], phase: str) -> list[dict]:
        from illusion_checks.probing import probe_model

        settings = self.settings
        self.progress(phase, 0, len(prepared))  # starts the phase's clock before the first batch; ends below
        while True:
            try:
                outcomes = probe_model(backend, prepared, settings,
                                       lambda step, done, total: self.progress(f"{phase}: {step}", done, total))
                self.progress(phase, len(prepared), len(prepared))
                return outcomes
            except Exception as error:  # back off on out-of-memory only, and say so
                size = settings.decode.batch_size
                if self.cfg.batch_size != "auto" or "out of memory" not in str(error).lower() or size == 1:
                    raise
                self.log(f"out of memory at batch size {size}; retrying with {size // 2}")
                settings = replace(settings, decode=replace(settings.decode, batch_size=size // 2))

    def _calibration(self, dataset: Dataset, prepared: list[PreparedItem]) -> dict[str, list[str]] | None:
        """The calibration texts by key, or None when the spec needs none (or a prebuilt model is given)."""
        from illusion_checks.compress.calibration import calibration_pool, calibration_texts
        from illusion_checks.compress.spec import parse_spec

        cfg = self.cfg
        if cfg.compressed or not parse_spec(cfg.compress).needs_calibration:
            return None
        pool, evaluated = calibration_pool(dataset, [p.item for p in prepared])
        langs = sorted({p.item.lang for p in prepared})
        return calibration_texts(cfg.calibration, pool, evaluated, langs, cfg.seed, nsamples=cfg.calibration_samples,
                                 notice=lambda lang, message: self.note("calibration", lang, message))

    def _compressed_identity(self, calibration: dict[str, list[str]] | None, ref_fingerprint: str,
                             base: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        cfg = self.cfg
        if cfg.compressed:
            _, fingerprint = self._resolve("compressed", cfg.compressed)
            block = {"name": cfg.compressed, "spec": None, "calibration": None, "fingerprint": fingerprint}
            return block, {**base, "role": "compressed", "model": fingerprint}
        calibration_key = None
        if calibration is not None:
            digest = hashlib.sha256(json.dumps(calibration, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
            calibration_key = {"source": cfg.calibration, "texts": digest, "nsamples": cfg.calibration_samples,
                               "seqlen": cfg.calibration_seqlen, "seed": cfg.seed}
        fingerprint = "sha256:" + cache_key({"reference": ref_fingerprint, "spec": cfg.compress, "calibration": calibration_key})
        block = {"name": f"{cfg.model}+{cfg.compress}", "spec": cfg.compress,
                 "calibration": cfg.calibration if calibration is not None else None, "fingerprint": fingerprint}
        return block, {**base, "role": "compressed", "model": fingerprint}

    def _probe_compressed(self, prepared: list[PreparedItem], calibration: dict[str, list[str]] | None) -> list[dict]:
        cfg = self.cfg
        if cfg.compressed:
            self._release_reference()  # the two models are never resident together
            backend = self._load("compressed", cfg.compressed)
            try:
                return self._probe(backend, prepared, "probe compressed")
            finally:
                backend.close()
        by_id: dict[str, dict] = {}
        for key, texts in (calibration or {"*": []}).items():
            subset = prepared if key == "*" else [p for p in prepared if p.item.lang == key]
            backend = self._compress(texts, label=key)
            try:
                for p, outcome in zip(subset, self._probe(backend, subset, self._phase("probe compressed", key))):
                    by_id[f"{p.item.lang}/{p.item.id}"] = outcome
            finally:
                backend.close()
        return [by_id[f"{p.item.lang}/{p.item.id}"] for p in prepared]

    def _release_reference(self) -> None:
        if self._reference is not None:
            self._reference.close()
            self._reference = None

    def _compress(self, texts: list[str], label: str) -> Backend:
        """A compressed copy of the reference (which stays as it was), saved when asked."""
        cfg = self.cfg
        if not self.engine.compress_needs_reference:
            self._release_reference()  # the engine reads the reference from its source: never two resident
        phase = self._phase("compress", label)
        self.progress(phase, 0, 1)
        options = CompressOptions(cfg.calibration_samples, cfg.calibration_seqlen, cfg.seed, cfg.device)
        compressed = self.engine.compress(cfg.model, self._load_reference, cfg.compress, texts, options,
                                          self._load_options(), lambda done, total: self.progress(phase, done, total),
                                          self.log)
        if cfg.save_compressed:
            self._save(compressed, label)
        return compressed

    def _phase(self, name: str, label: str) -> str:
        """`probe compressed [wanda:0.5] (en)`: progress and phase times name the spec (and calibration)."""
        return f"{name} [{self.cfg.compress}]" + ("" if label == "*" else f" ({label})")

    def _save_target(self, label: str) -> Path:
        folder = Path(self.cfg.save_compressed).resolve()
        return folder if label == "*" else folder / label

    def _holds(self, label: str) -> bool:
        """Whether the save folder already holds this run's compressed model (an earlier run saved it); says so."""
        target = self._save_target(label)
        manifest = self.engine.saved_manifest(target)
        held = manifest is not None and manifest.get("fingerprint") == self._compressed_fingerprint
        if held:
            self.log(f"{target} already holds this compressed model; not saved again")
        return held

    def _save(self, backend: Backend, label: str) -> None:
        """--illusion-save-compressed: save the compressed model, atomically, unless the folder holds it already."""
        self._saved.add(label)
        if self._holds(label):
            return
        manifest = {"fingerprint": self._compressed_fingerprint, "reference": self.cfg.model,
                    "spec": self.cfg.compress, "calibration": None if label == "*" else label}
        saved = self.engine.save(backend, self._save_target(label), manifest)
        self.log(f"compressed model saved to {saved}")

    def _save_unsaved(self, calibration: dict[str, list[str]] | None) -> None:
        """Outcomes from the cache compressed nothing: compress again each model the save folder lacks, to save it."""
        for label, texts in (calibration or {"*": []}).items():
            if label in self._saved or self._holds(label):
                continue
            self.log(f"compressed outcomes came from the cache; compressing again to save the model to "
                     f"{self._save_target(label)}")
            self._compress(texts, label).close()
