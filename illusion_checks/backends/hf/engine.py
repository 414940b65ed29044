"""What the evaluation asks of the transformers engine besides probing (see `Engine`): a model's
identity before it loads, loading, in-loop compression of a copy, saving. Importing it imports
neither torch nor transformers, so a run whose outcomes all come from the cache never pays for them."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from illusion_checks.backends.base import Backend, CompressOptions, CompressTarget, LoadOptions, PhaseProgress

if TYPE_CHECKING:
    from illusion_checks.backends.hf.backend import HFBackend


class HFEngine:
    """What the evaluation asks of the transformers engine besides probing: a model's identity
    before it loads, loading, in-loop compression of a copy, and saving (see `Engine`)."""

    name = "hf"

    def version(self) -> str:
        return metadata.version("transformers")  # what transformers.__version__ says, without importing it

    def resolve(self, source: str, allow_pickle: bool) -> tuple[str, str]:
        from illusion_checks.backends.hf.load import resolve_source

        return resolve_source(source, allow_pickle)

    def device_type(self, device: str) -> str:
        from illusion_checks.backends.hf.load import device_type

        return device_type(device)

    def check_spec_fits(self, spec: str, source: str, trust_remote_code: bool) -> None:
        from illusion_checks.compress.fit import check_spec_fits
        from illusion_checks.compress.spec import parse_spec

        check_spec_fits(spec, source, trust_remote_code)
        if parse_spec(spec).is_llmc:
            from illusion_checks.compress import llmc

            llmc.check(spec, source, trust_remote_code)

    def compression_identity(self, spec: str, source: str, trust_remote_code: bool) -> dict[str, Any] | None:
        """An llmc spec's recipe (as fitted to the model at `source`), its digest and llmcompressor's version."""
        from illusion_checks.compress.spec import parse_spec

        if not parse_spec(spec).is_llmc:
            return None
        from illusion_checks.compress import llmc

        return llmc.identity(spec, source, trust_remote_code)

    def load(self, source: str, options: LoadOptions) -> "HFBackend":
        from illusion_checks.backends.hf.backend import HFBackend

        return HFBackend.load(source, options.device, options.dtype, options.trust_remote_code, options.allow_pickle)

    compress_needs_reference = True  # a deep copy of the loaded reference is compressed

    def compress(self, source: str, reference: Callable[[], Backend], spec: str, target: CompressTarget,
                 texts: list[str] | None, options: CompressOptions, load: LoadOptions, progress: PhaseProgress,
                 log: Callable[[str], None]) -> "HFBackend":
        """A compressed deep copy of the loaded reference (which stays as it was), in memory: nothing
        is written to `target.folder` (the evaluation saves it when asked); calibration warnings go to `log`."""
        import copy

        from illusion_checks.backends.hf.backend import HFBackend
        from illusion_checks.backends.hf.load import resolve_device
        from illusion_checks.compress import compress_model, parse_spec

        parsed = parse_spec(spec)
        if parsed.is_llmc:
            folder = self.compress_llmc(source, spec, target, texts, options, load, log)
            progress(0, 0)  # the phase's end time; it counts no layers (oneshot runs elsewhere)
            backend = self.load(str(folder), load)
            backend.checkpoint = folder  # what --illusion-save-compressed ships: the checkpoint, not the dequantized copy
            return backend
        loaded = reference()
        assert isinstance(loaded, HFBackend)
        model = copy.deepcopy(loaded.model)
        calibration = None
        if parsed.needs_calibration:
            context = getattr(model.config, "max_position_embeddings", None) or options.seqlen
            calibration = _calibration_ids(loaded.tokenizer, texts, options, context, log)
        report = compress_model(model, parsed, calibration, resolve_device(options.device), progress)
        return HFBackend(report.model, loaded.tokenizer)

    def compress_llmc(self, source: str, spec: str, target: CompressTarget, texts: list[str] | None,
                      options: CompressOptions, load: LoadOptions, log: Callable[[str], None]) -> Path:
        """llm-compressor's checkpoint of `spec` (an llmc spec) in `target.folder`: made there by `oneshot`
        from the reference's files and the tool's calibration ids, unless its manifest's fingerprint
        shows that an earlier run made it."""
        held = self.saved_manifest(target.folder)
        if held is not None and held.get("fingerprint") == target.fingerprint:
            log(f"llm-compressor checkpoint from the cache: {target.folder}")
            return target.folder
        from transformers import AutoConfig, AutoTokenizer

        from illusion_checks.backends.hf.load import resolve_device, resolve_dtype
        from illusion_checks.compress import llmc, parse_spec

        folder, _ = self.resolve(source, load.allow_pickle)
        recipe = llmc.plan(spec, folder, load.trust_remote_code)
        ids = None
        if parse_spec(spec).needs_calibration:
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=load.trust_remote_code)
            config = AutoConfig.from_pretrained(folder, trust_remote_code=load.trust_remote_code)
            context = getattr(config.get_text_config(), "max_position_embeddings", None) or options.seqlen
            ids = _calibration_ids(tokenizer, texts, options, context, log).tolist()
        dtype = str(resolve_dtype(load.dtype, resolve_device(options.device))).removeprefix("torch.")
        manifest = {**target.manifest, "llmc": recipe.describe(llmc.llmc_version())}
        log(f"llm-compressor oneshot: {spec} ({recipe.origin}{'; ' + recipe.note if recipe.note else ''})")
        llmc.run_oneshot(folder, recipe.text, ids, dtype, target.folder, manifest, log)
        return target.folder

    def save(self, backend: Backend, folder: Path, manifest: dict[str, Any]) -> Path:
        from illusion_checks.backends.hf.backend import HFBackend
        from illusion_checks.compress import save_compressed

        assert isinstance(backend, HFBackend)
        if backend.checkpoint is not None:  # llm-compressor's checkpoint, as it ships
            from illusion_checks.compress.save import copy_saved

            return copy_saved(backend.checkpoint, folder, manifest)
        return save_compressed(backend.model, backend.tokenizer, folder, manifest)

    def saved_manifest(self, folder: Path) -> dict[str, Any] | None:
        from illusion_checks.compress import saved_manifest

        return saved_manifest(folder)


def _calibration_ids(tokenizer: Any, texts: list[str] | None, options: CompressOptions, context: int,
                     log: Callable[[str], None]) -> Any:
    """The calibration batch (a LongTensor [samples, seqlen]), its warnings (too few tokens) sent to `log`."""
    import warnings

    from illusion_checks.compress import calibration_batch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = calibration_batch(tokenizer, texts or [], options.samples, min(options.seqlen, context), options.seed)
    for warning in caught:
        log(str(warning.message))
    return ids
