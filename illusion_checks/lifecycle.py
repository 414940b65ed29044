"""The models of one evaluation, from source to freed memory: resolving and loading them through the
chosen engines, compressing the reference (the compressed model's one identity: its fingerprint,
manifest and folders), probing with the batch size halved on out-of-memory, releasing and saving.
The reference loads once; it is released before a prebuilt compressed model loads, and before an
engine that reads the reference from its source compresses it, so the two are never both resident."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from illusion_checks.backends.base import Backend, CompressOptions, CompressTarget, Engine, LoadOptions
from illusion_checks.cache import cache_key, cache_root
from illusion_checks.compress.calibration import SHARED
from illusion_checks.compress.spec import parse_spec
from illusion_checks.probing import PreparedItem, ProbeSettings, probe_outcomes
from illusion_checks.records import Outcome
from illusion_checks.spec import EvaluationSpec, Progress

Log = Callable[[str], None]
Calibration = dict[str, list[str]]  # calibration texts by label: a language, or ALL
ALL = SHARED  # the label of the one compressed model for every language (one calibration set, or none)


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


@dataclass(frozen=True)
class Compression:
    """One compressed model of the evaluation: its spec (None: the prebuilt --illusion-compressed),
    its calibration texts by label (None: none needed), its fingerprint, and the folder under the
    cache where an engine that loads models from disk keeps it (None: prebuilt)."""

    spec: str | None
    calibration: Calibration | None
    fingerprint: str
    folder: Path | None = None
    llmc: dict[str, Any] | None = None  # an llmc spec's recipe, its digest and llmcompressor's version

    def copies(self) -> Calibration:
        """Each compressed copy to make: its label and calibration texts (ALL and none, without any)."""
        return self.calibration or {ALL: []}


def compressed_fingerprint(cfg: EvaluationSpec, spec: str, calibration: Calibration | None, reference: str,
                           llmc: dict[str, Any] | None = None) -> str:
    """The compressed model's fingerprint: the reference's, the spec, the calibration texts (their
    digest) with how they were drawn, and for an llmc spec the recipe's digest and llmcompressor's version."""
    calibration_key = None
    if calibration is not None:
        digest = hashlib.sha256(json.dumps(calibration, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        calibration_key = {"source": cfg.calibration, "texts": digest, "nsamples": cfg.calibration_samples,
                           "seqlen": cfg.calibration_seqlen, "seed": cfg.seed}
    parts: dict[str, Any] = {"reference": reference, "spec": spec, "calibration": calibration_key}
    if llmc is not None:
        parts["llmc"] = {"recipe": llmc["recipe_sha256"], "llmcompressor": llmc["llmcompressor"]}
    return "sha256:" + cache_key(parts)


def _folder_name(source: str, spec: str, fingerprint: str) -> str:
    """`SmolLM2-135M-wanda_0.5-<16 hex>`: a recipe file's spec is named by the file's stem."""
    parsed = parse_spec(spec)
    label = f"llmc_{Path(parsed.recipe_file).stem}" if parsed.recipe_file else spec
    label = re.sub(r"[^A-Za-z0-9._-]", "_", label)
    return f"{Path(source).name}-{label}-{fingerprint.removeprefix('sha256:')[:16]}"


def _item_id(p: PreparedItem) -> str:
    return f"{p.item.lang}/{p.item.id}"


def _phase(name: str, spec: str | None, label: str) -> str:
    """`probe compressed [wanda:0.5] (en)`: progress and phase times name the spec (and calibration)."""
    return f"{name} [{spec}]" + ("" if label == ALL else f" ({label})")


class Models:
    """The reference and compressed models of one evaluation: `engine` (--illusion-backend) loads,
    compresses and saves local models; `engines[role]` resolves and loads each role's source (a
    server URL through its own engine)."""

    def __init__(self, cfg: EvaluationSpec, engine: Engine, engines: dict[str, Engine], settings: ProbeSettings,
                 stats: RunStats, progress: Progress, log: Log) -> None:
        self.cfg, self.engine, self.engines, self.settings = cfg, engine, engines, settings
        self.stats, self.progress, self.log = stats, progress, log
        self._reference: Backend | None = None
        self._saved: set[tuple[str, str]] = set()  # (fingerprint, label): this run saved it, or found it saved

    def compression(self, spec: str | None, calibration: Calibration | None, reference: tuple[str, str]) -> Compression:
        """The compressed model's identity: --illusion-compressed's own fingerprint (resolved here), or the
        spec's, from `reference` (the reference's resolved source and fingerprint), with its folder under
        --illusion-cache-dir (default: the user cache)."""
        cfg = self.cfg
        if cfg.compressed:
            _, fingerprint = self.resolve("compressed", cfg.compressed)
            return Compression(None, None, fingerprint)
        assert spec is not None
        source, reference_fingerprint = reference
        llmc = self.engine.compression_identity(spec, source, cfg.trust_remote_code)
        fingerprint = compressed_fingerprint(cfg, spec, calibration, reference_fingerprint, llmc)
        root = Path(cfg.cache_dir) if cfg.cache_dir else cache_root()
        return Compression(spec, calibration, fingerprint, root / "compressed" / _folder_name(source, spec, fingerprint),
                           llmc)

    def resolve(self, role: str, source: str) -> tuple[str, str]:
        """The loadable source and fingerprint: a phase, as a GGUF is converted once and weights are hashed."""
        self.progress(f"prepare {role}", 0, 1)
        resolved = self.engines[role].resolve(source, self.cfg.allow_pickle)
        self.progress(f"prepare {role}", 1, 1)
        return resolved

    def load_options(self) -> LoadOptions:
        """How every model of the run loads (--illusion-device, --illusion-dtype, the engine's arguments)."""
        cfg = self.cfg
        return LoadOptions(cfg.device, cfg.dtype, cfg.trust_remote_code, cfg.allow_pickle, seed=cfg.seed,
                           parallel=(cfg.tensor_parallel_size, cfg.pipeline_parallel_size),
                           engine_args=tuple(sorted(cfg.backend_args.to_dict().items())))

    def load(self, role: str, source: str) -> Backend:
        """The model at `source`, loaded by the role's engine (a phase)."""
        self.progress(f"load {role}", 0, 1)
        backend = self.engines[role].load(source, self.load_options())
        if self.cfg.chat_template and not getattr(backend.tokenizer, "chat_template", None):
            backend.close()
            raise ValueError(f"--illusion-chat-template: the tokenizer of {source} has no chat template; drop the flag, "
                             "or use a model (or --illusion-tokenizer) whose tokenizer has one")
        self.stats.models_loaded += 1
        self.progress(f"load {role}", 1, 1)
        return backend

    def reference(self) -> Backend:
        """The reference model, loaded on first use and kept until released."""
        if self._reference is None:
            self._reference = self.load("reference", self.cfg.model)
        return self._reference

    def release_reference(self) -> None:
        """Free the reference (a later `reference()` loads it again)."""
        if self._reference is not None:
            self._reference.close()
            self._reference = None

    def probe(self, backend: Backend, prepared: list[PreparedItem], phase: str,
              batch_size: int | None = None) -> list[Outcome]:
        """Every probe of `prepared` on `backend`, as the phase `phase` (at `batch_size`, else the
        option's). With --illusion-batch-size=auto, running out of memory halves the batch size and
        starts again."""
        settings = self.settings
        if batch_size is not None:
            settings = replace(settings, decode=replace(settings.decode, batch_size=batch_size))
        self.progress(phase, 0, len(prepared))  # starts the phase's clock before the first batch; ends below
        while True:
            try:
                outcomes = probe_outcomes(backend, prepared, settings,
                                          lambda step, done, total: self.progress(f"{phase}: {step}", done, total))
                self.progress(phase, len(prepared), len(prepared))
                return outcomes
            except Exception as error:  # back off on out-of-memory only, and say so
                size = settings.decode.batch_size
                if self.cfg.batch_size != "auto" or "out of memory" not in str(error).lower() or size == 1:
                    raise
                self.log(f"out of memory at batch size {size}; retrying with {size // 2}")
                settings = replace(settings, decode=replace(settings.decode, batch_size=size // 2))

    def probe_compressed(self, prepared: list[PreparedItem], compression: Compression) -> list[Outcome]:
        """The compressed model's outcomes: the prebuilt model's, or each compressed copy's on its items
        (one per calibration language, or one for all)."""
        cfg = self.cfg
        if cfg.compressed:
            self.release_reference()  # the two models are never resident together
            backend = self.load("compressed", cfg.compressed)
            try:
                return self.probe(backend, prepared, "probe compressed")
            finally:
                backend.close()
        by_id: dict[str, Outcome] = {}
        for label, texts in compression.copies().items():
            subset = prepared if label == ALL else [p for p in prepared if p.item.lang == label]
            phase = _phase("probe compressed", compression.spec, label)
            backend = self.compress(compression, label, texts)
            try:
                by_id.update((_item_id(p), outcome) for p, outcome in zip(subset, self.probe(backend, subset, phase)))
            finally:
                backend.close()
        return [by_id[_item_id(p)] for p in prepared]

    def compress(self, compression: Compression, label: str, texts: list[str]) -> Backend:
        """A compressed copy of the reference (which stays as it was), saved when asked."""
        cfg, spec = self.cfg, compression.spec
        assert spec is not None
        if not self.engine.compress_needs_reference or parse_spec(spec).is_llmc:
            self.release_reference()  # compressed from the reference's files: never two copies resident
        phase = _phase("compress", spec, label)
        self.progress(phase, 0, 1)
        options = CompressOptions(cfg.calibration_samples, cfg.calibration_seqlen, cfg.seed, cfg.device)
        compressed = self.engine.compress(cfg.model, self.reference, spec, self._target(compression, label), texts,
                                          options, self.load_options(),
                                          lambda done, total: self.progress(phase, done, total), self.log)
        if cfg.save_compressed:
            self._save(compressed, compression, label)
        return compressed

    def save_unsaved(self, compression: Compression) -> None:
        """--illusion-save-compressed when the outcomes came from the cache (nothing was compressed):
        compress again each copy the save folder lacks, to save it."""
        for label, texts in compression.copies().items():
            if (compression.fingerprint, label) in self._saved or self._holds(compression, label):
                continue
            self.log(f"compressed outcomes came from the cache; compressing again to save the model to "
                     f"{self._save_folder(label)}")
            self.compress(compression, label, texts).close()

    def _target(self, compression: Compression, label: str) -> CompressTarget:
        """The copy's identity as engines and saved folders record it, and its folder under the cache."""
        assert compression.folder is not None
        manifest = {"fingerprint": compression.fingerprint, "reference": self.cfg.model, "spec": compression.spec,
                    "calibration": None if label == ALL else label}
        return CompressTarget(compression.folder if label == ALL else compression.folder / label, manifest)

    def _save_folder(self, label: str) -> Path:
        assert self.cfg.save_compressed
        folder = Path(self.cfg.save_compressed).resolve()
        return folder if label == ALL else folder / label

    def _holds(self, compression: Compression, label: str) -> bool:
        """Whether the save folder already holds this compressed model (an earlier run saved it); says so."""
        folder = self._save_folder(label)
        manifest = self.engine.saved_manifest(folder)
        held = manifest is not None and manifest.get("fingerprint") == compression.fingerprint
        if held:
            self.log(f"{folder} already holds this compressed model; not saved again")
        return held

    def _save(self, backend: Backend, compression: Compression, label: str) -> None:
        """--illusion-save-compressed: save the compressed model, atomically, unless the folder holds it already."""
        self._saved.add((compression.fingerprint, label))
        if self._holds(compression, label):
            return
        saved = self.engine.save(backend, self._save_folder(label), self._target(compression, label).manifest)
        self.log(f"compressed model saved to {saved}")
