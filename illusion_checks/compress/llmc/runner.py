"""The tool's side of llm-compressor: find the Python that has it, ask its version, check a recipe, and
run `oneshot` there (worker.py) into a folder written atomically. Imports neither torch nor llmcompressor."""

from __future__ import annotations

import json
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from illusion_checks.compress.save import write_atomically
from illusion_checks.errors import CompressorError, CompressorSetupError
from illusion_checks.worker_python import worker_python

WORKER = Path(__file__).with_name("worker.py")
PYTHON_ENV = "ILLUSION_LLMC_PYTHON"
_VALIDATE_TIMEOUT_S = 600  # importing llmcompressor takes 5-20 s on a busy CPU; a hung import is an error


def llmc_python() -> str:
    """The Python that runs the worker: `$ILLUSION_LLMC_PYTHON`, else this one when it has llmcompressor."""
    return worker_python(PYTHON_ENV, "llmcompressor", "llmcompressor", "--illusion-compress=llmc:...",
                         "`make llmc` builds .venv-llmc", CompressorSetupError)


def _call(args: Sequence[str], timeout: float | None) -> dict[str, Any]:
    """Run the worker; its reply is the last line of stdout (the last stderr line explains a crash)."""
    try:
        done = subprocess.run([llmc_python(), str(WORKER), *args], capture_output=True, text=True, encoding="utf-8",
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CompressorError(f"llm-compressor's worker did not answer '{args[0]}' within {timeout:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
        raise CompressorError(f"llm-compressor's worker stopped during '{args[0]}' (exit {done.returncode}): {last}")
    return reply


@lru_cache(maxsize=None)
def llmc_version() -> str:
    """llmcompressor's version in its environment (importlib.metadata: nothing is imported)."""
    reply = _call(["version"], timeout=120)
    if not reply["ok"]:
        raise CompressorSetupError(f"--illusion-compress=llmc:...: {llmc_python()} has no llmcompressor "
                                   f"({reply['error']})")
    return str(reply["version"])


@lru_cache(maxsize=None)
def _validated(text: str) -> tuple[str, ...]:
    """The modifiers of a recipe text llmcompressor accepts (checked once per text and process)."""
    with tempfile.TemporaryDirectory(prefix="illusion-llmc-") as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        reply = _call(["validate", str(path)], timeout=_VALIDATE_TIMEOUT_S)
    if not reply["ok"]:
        raise CompressorSetupError(reply["error"])
    return tuple(reply["modifiers"])


def check_recipe(spec_text: str, text: str) -> tuple[str, ...]:
    """The modifiers of a recipe's `text`, which llmcompressor's own parser accepts; a CompressorSetupError
    naming the spec and the first modifier (or field) it refuses."""
    try:
        return _validated(text)
    except CompressorSetupError as error:
        raise CompressorSetupError(f"--illusion-compress={spec_text}: the recipe {error}") from None


def run_oneshot(source: str, recipe: str, calibration: list[list[int]] | None, dtype: str, folder: Path,
                manifest: Mapping[str, Any], log: Callable[[str], None]) -> float:
    """Compress the model at `source` with `recipe` (its text) and the calibration ids; write the
    compressed-tensors checkpoint, and `manifest`, to `folder` atomically. Returns oneshot's seconds."""
    seconds: list[float] = []

    def write(staging: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="illusion-llmc-") as scratch:
            recipe_path, request_path = Path(scratch) / "recipe.yaml", Path(scratch) / "request.json"
            recipe_path.write_text(recipe, encoding="utf-8")
            request = {"source": source, "recipe": str(recipe_path), "calibration": calibration, "dtype": dtype,
                       "out": str(staging)}
            request_path.write_text(json.dumps(request), encoding="utf-8")
            reply = _call(["oneshot", str(request_path)], timeout=None)
        if not reply["ok"]:
            raise CompressorError(f"llm-compressor's oneshot failed: {reply['error']}")
        seconds.append(float(reply["seconds"]))

    write_atomically(folder, write, manifest)
    log(f"llm-compressor oneshot took {seconds[0]:.1f} s; checkpoint saved to {folder}")
    return seconds[0]
