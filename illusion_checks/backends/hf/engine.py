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

        check_spec_fits(spec, source, trust_remote_code)

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
        import warnings

        from illusion_checks.backends.hf.backend import HFBackend
        from illusion_checks.backends.hf.load import resolve_device
        from illusion_checks.compress import calibration_batch, compress_model, parse_spec

        loaded = reference()
        assert isinstance(loaded, HFBackend)
        parsed = parse_spec(spec)
        model = copy.deepcopy(loaded.model)
        calibration = None
        if parsed.needs_calibration:
            context = getattr(model.config, "max_position_embeddings", None) or options.seqlen
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                calibration = calibration_batch(loaded.tokenizer, texts or [], options.samples,
                                                min(options.seqlen, context), options.seed)
            for warning in caught:
                log(str(warning.message))
        report = compress_model(model, parsed, calibration, resolve_device(options.device), progress)
        return HFBackend(report.model, loaded.tokenizer)

    def save(self, backend: Backend, folder: Path, manifest: dict[str, Any]) -> Path:
        from illusion_checks.backends.hf.backend import HFBackend
        from illusion_checks.compress import save_compressed

        assert isinstance(backend, HFBackend)
        return save_compressed(backend.model, backend.tokenizer, folder, manifest)

    def saved_manifest(self, folder: Path) -> dict[str, Any] | None:
        from illusion_checks.compress import saved_manifest

        return saved_manifest(folder)
