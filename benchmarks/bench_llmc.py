"""What each llm-compressor preset costs on a small model, and which of them vLLM's CPU build runs.

For each preset (`llmc:gptq-w4a16`, `w8a8-int8`, `fp8-dynamic`, `sparsegpt-2:4`, `wanda:0.5`,
`sparsegpt:0.5`) on the same calibration ids (the embedded passages, 16 windows of 256 tokens by
default), one run:
  (a) `oneshot`'s own seconds in the worker, and the wall time of the whole step (worker start,
      model load, oneshot, compressed save);
  (b) the checkpoint's size beside the reference's, and its quantization (config.json);
  (c) the relative change of the reference's logits on a held-out passage, through the hf backend
      (the checkpoint dequantized on the CPU, activation quantization kept);
  (d) with ILLUSION_VLLM_PYTHON set: whether vLLM loads the checkpoint and runs one greedy step, in
      float32, and in bfloat16 where float32 fails.

    ILLUSION_LLMC_PYTHON=.venv-llmc/bin/python ILLUSION_VLLM_PYTHON=.venv-vllm/bin/python \\
        VLLM_CPU_KVCACHE_SPACE=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_llmc.py \\
        [--model smollm2-135m] [--presets gptq-w4a16,wanda:0.5] [--samples 16] [--seqlen 256]

The last line is machine-readable JSON. Checkpoints go to a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from illusion_checks.backends.base import CompressOptions, CompressTarget, LoadOptions  # noqa: E402
from illusion_checks.backends.hf.engine import HFEngine  # noqa: E402
from illusion_checks.backends.hf.load import load_model  # noqa: E402
from illusion_checks.compress.calibration import calibration_texts  # noqa: E402

PRESETS = ("gptq-w4a16", "w8a8-int8", "fp8-dynamic", "sparsegpt-2:4", "wanda:0.5", "sparsegpt:0.5")
HELD_OUT = ("The river rises in the northern hills and runs south through three valleys before it reaches the "
            "sea; the old town on its banks was built of the grey stone quarried upstream.")


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("*.safetensors"))


def _scheme(folder: Path) -> str:
    from illusion_checks.backends.vllm.engine import _scheme as scheme

    return scheme(folder)


def _logit_change(folder: Path, reference: Any, ids: torch.Tensor) -> float:
    model = load_model(str(folder), device="cpu", dtype="float32").model
    with torch.no_grad():
        dense, ours = reference(ids).logits, model(ids).logits
    return float((ours - dense).norm() / dense.norm())


def _vllm(folder: Path, spec: str) -> str:
    if not os.environ.get("ILLUSION_VLLM_PYTHON"):
        return "–"
    from illusion_checks.backends.vllm.engine import _load_compressed_tensors

    said = []
    for dtype in ("float32", "bfloat16"):
        try:
            _load_compressed_tensors(folder, spec, LoadOptions("cpu", dtype), "vllm-cpu").close()
            return " ".join(said + [f"ran in {dtype}"])
        except ValueError as error:
            said.append(f"refused in {dtype} ({str(error).split('(')[-1].rstrip(')')[:80]});")
    return " ".join(said)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=256)
    args = parser.parse_args()
    engine = HFEngine()
    source, _ = engine.resolve(args.model, False)
    texts = calibration_texts("embedded", {}, set(), ["en"], seed=0, nsamples=args.samples)["*"]
    options, load = CompressOptions(args.samples, args.seqlen, 0, "cpu"), LoadOptions("cpu", "float32")
    reference = load_model(args.model, device="cpu", dtype="float32")
    ids = reference.tokenizer(HELD_OUT, return_tensors="pt")["input_ids"]
    rows, lines = [], []
    with tempfile.TemporaryDirectory(prefix="bench-llmc-") as scratch:
        for preset in args.presets.split(","):
            spec, folder, said = f"llmc:{preset}", Path(scratch) / preset.replace(":", "_"), []
            start = time.perf_counter()
            engine.compress_llmc(args.model, spec, CompressTarget(folder, {"fingerprint": spec}), texts, options,
                                 load, said.append)
            wall = time.perf_counter() - start
            oneshot = float(next(line for line in said if "oneshot took" in line).split("took ")[1].split(" s")[0])
            row = {"preset": preset, "oneshot_s": round(oneshot, 1), "wall_s": round(wall, 1),
                   "size_ratio": round(_size(folder) / _size(Path(source)), 3), "scheme": _scheme(folder),
                   "logit_change": round(_logit_change(folder, reference.model, ids), 4), "vllm": _vllm(folder, spec)}
            rows.append(row)
            lines.append(f"{preset:<15} oneshot {row['oneshot_s']:>7.1f} s  wall {row['wall_s']:>7.1f} s  "
                         f"size {row['size_ratio']:.2f}x  logits {row['logit_change']:.4f}  {row['scheme']}  "
                         f"vLLM: {row['vllm']}")
            print(lines[-1], flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"model": args.model, "samples": args.samples, "seqlen": args.seqlen, "rows": rows}))


if __name__ == "__main__":
    main()
