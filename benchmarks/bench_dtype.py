"""bfloat16 against float32 on the CPU (issue 26): speed of the full probe set and agreement.

For each model and the same N XQuAD English items, one run probes the model in float32 (the
default) and then in bfloat16 (`--illusion-dtype=bfloat16`; this machine's CPU has avx512_bf16),
each after a one-item warm-up, and prints:
  - the wall time of each, and their ratio;
  - agreement of bfloat16 with float32, item by item: MC choice, greedy FF output, FF correctness,
    gold rank (exact, and within +-1), CS output, beam and sample reachability;
  - the fates of bfloat16 read against float32 as if it were a compressed copy (float32 the
    reference): the dissociation the dtype alone would add to a gate. 0 means the dtype moves no
    both-correct item.
The last line per model is machine-readable (DTYPE {json}).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_dtype.py [--items 30] \\
        [--models smollm2-135m,gemma3-270m]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from illusion_checks import records as R
from illusion_checks.backends.base import DecodeSettings
from illusion_checks.backends.hf.backend import HFBackend
from illusion_checks.backends.hf.load import load_model
from illusion_checks.datasets import load_dataset
from illusion_checks.fates import Fate
from illusion_checks.probing import ProbeSettings, paired_item, prepare_items, probe_outcomes

HERE = Path(__file__).resolve().parent
XQUAD_EN = HERE.parents[1] / "shared" / "xquad" / "xquad.en.json"


def run(alias: str, dtype: str, items: list[Any], settings: ProbeSettings) -> tuple[float, list[R.Outcome]]:
    """The full probe set in one dtype (after a one-item warm-up); the model is freed after."""
    loaded = load_model(alias, device="cpu", dtype=dtype)
    backend = HFBackend(loaded.model, loaded.tokenizer)
    probe_outcomes(backend, items[:1], settings)
    start = time.perf_counter()
    outcomes = probe_outcomes(backend, items, settings)
    seconds = time.perf_counter() - start
    del backend, loaded
    gc.collect()
    return seconds, outcomes


def agreement(items: list[Any], fp32: list[R.Outcome], bf16: list[R.Outcome]) -> dict[str, Any]:
    """Per-field agreement counts, and the fates of bf16 against fp32 as the reference."""
    same = Counter()
    for a, b in zip(fp32, bf16):
        same["mc_choice"] += a.mc.choice == b.mc.choice
        same["ff_output"] += a.ff.output == b.ff.output
        same["ff_correct"] += a.ff.correct == b.ff.correct
        same["cs_output"] += a.cs.output == b.cs.output
        same["gold_rank"] += a.gold_rank == b.gold_rank
        same["gold_rank_within_1"] += (a.gold_rank is not None and b.gold_rank is not None
                                       and abs(a.gold_rank - b.gold_rank) <= 1) or a.gold_rank == b.gold_rank
        same["beam_reached"] += (a.beam.reached if a.beam else None) == (b.beam.reached if b.beam else None)
        same["sample_reached"] += (a.sample.reached if a.sample else None) == (b.sample.reached if b.sample else None)
    records = [paired_item(p, a, b) for p, a, b in zip(items, fp32, bf16)]
    fates = Counter(Fate(r.fate).value for r in records if r.both_correct)
    both = sum(r.both_correct for r in records)
    return {"n": len(items), "same": dict(same), "both_correct": both, "fates": dict(fates),
            "moved": both - fates.get(Fate.KEPT.value, 0),
            "max_score_delta": max(abs(x - y) for a, b in zip(fp32, bf16) for x, y in zip(a.mc.scores, b.mc.scores))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--data", default=str(XQUAD_EN))
    args = parser.parse_args()
    settings = ProbeSettings(decode=DecodeSettings(), items_per_language=args.items)
    items = prepare_items(load_dataset(args.data), ["en"], settings)
    print(f"CPU, torch threads {torch.get_num_threads()}, {len(items)} XQuAD en items, batch size "
          f"{settings.decode.batch_size}; bf16 CPU support: {torch.backends.mkldnn.is_available()}")
    for alias in args.models.split(","):
        t32, fp32 = run(alias, "float32", items, settings)
        t16, bf16 = run(alias, "bfloat16", items, settings)
        found = agreement(items, fp32, bf16)
        n = found["n"]
        print(f"\n{alias}: float32 {t32:.1f} s, bfloat16 {t16:.1f} s, bfloat16/float32 = {t16 / t32:.2f}")
        print("bfloat16 agrees with float32 on: " + ", ".join(f"{k} {v}/{n}" for k, v in found["same"].items()))
        print(f"max |MC option log-prob difference| {found['max_score_delta']:.3f}; fates of bfloat16 read against "
              f"float32 (float32 the reference, {found['both_correct']} both-correct items): {found['fates']}")
        print("DTYPE " + json.dumps({"model": alias, "float32_s": round(t32, 2), "bfloat16_s": round(t16, 2),
                                     **found}), flush=True)


if __name__ == "__main__":
    main()
