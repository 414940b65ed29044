"""Where the full probe set's time goes (issue 26): by probe and by kind of work, on the HF engine.

For each model (CPU, the chosen dtype) and N XQuAD English items, one run of the full probe set
(`probing.probe_model` on an `HFBackend`, after a one-item warm-up) is split two ways:

  phases (the probe engine's own progress phases): FF/MC/rank/beam/samples, then the greedy
  prompts (CS, 1-shot, 0-shot short, ablations);

  probes x kinds of work, measured by wrapping the HF engine's functions and the model's forward:
    - prefill       forward passes over a prompt (more than one new token, no cache yet);
    - decode        one-token forward passes: their count (steps) and rows per step;
    - score         forward passes continuing a cache with several tokens (MC options, rank row);
    - padding       the share of forward positions that were padding (left pads, finished rows);
    - kv            KV-cache forks, row drops, reorders, joins and room-making (backends/hf/kv.py);
    - softmax       (log-)softmax over the vocabulary outside the model (ranks, beams, nucleus, MC);
    - tokenizer     tokenizer.decode calls (the answer-line check, the answers);
    - other         the probe's wall time less all of the above: Python between steps, the
                    samplers' and the beam search's own tensor work.
  A probe's time is counted where it is innermost: `FF prefill` is the shared prefill of the FF
  prompts, `FF greedy`, `MC + rank`, `beam-5` and `samples` fork it; `greedy prompts` is every
  other prompt kind.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/profile_probes.py [--items 30] \\
        [--models smollm2-135m,gemma3-270m] [--dtype float32]

The last line per model is machine-readable (PROFILE {json}).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from illusion_checks.backends.base import DecodeSettings
from illusion_checks.backends.hf import backend as hf_backend
from illusion_checks.backends.hf import decode as hf_decode
from illusion_checks.backends.hf import kv as hf_kv
from illusion_checks.backends.hf import prefix as hf_prefix
from illusion_checks.backends.hf import stream as hf_stream
from illusion_checks.backends.hf.backend import HFBackend
from illusion_checks.backends.hf.load import load_model
from illusion_checks.datasets import load_dataset
from illusion_checks.probing import ProbeSettings, prepare_items, probe_model

HERE = Path(__file__).resolve().parent
XQUAD_EN = HERE.parents[1] / "shared" / "xquad" / "xquad.en.json"
KINDS = ("prefill", "decode", "score", "kv", "softmax", "tokenizer")
# module attribute -> the probe label its calls are counted under (innermost wins)
PROBES = {
    (hf_prefix, "ff_probes"): "FF prefill",
    (hf_prefix, "decode_tokens"): "FF greedy",
    (hf_prefix, "score_rows"): "MC + rank",
    (hf_prefix, "beam"): "beam-5",
    (hf_prefix, "samples"): "samples",
    (hf_backend.HFBackend, "greedy_tokens"): "greedy prompts",
}
# the KV-cache operations, wherever an HF engine module imported them
KV_CALLS = [(module, name) for module in (hf_kv, hf_prefix, hf_decode, hf_stream)
            for name in ("fork", "keep_rows", "reorder_rows", "make_room", "join") if hasattr(module, name)]
SOFTMAX_CALLS = [(torch, "log_softmax"), (torch, "softmax")]


class Profile:
    """Seconds per (probe, kind), forward positions and real tokens per probe, decode steps and rows."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.stack: list[str] = ["outside"]
        self.in_model = 0  # > 0 while a forward pass runs: softmax inside the model is the model's

    @property
    def probe(self) -> str:
        return self.stack[-1]

    def add(self, kind: str, seconds: float, count: int = 1) -> None:
        self.seconds[self.probe, kind] += seconds
        self.counts[self.probe, kind] += count

    def entered(self, label: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.stack.append(label)
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.wall[label] += time.perf_counter() - start
                self.stack.pop()
                if self.stack[-1] != "outside":  # the caller's wall time excludes the callee's
                    self.wall[self.stack[-1]] -= time.perf_counter() - start
        return wrapper

    def kind(self, kind: str, call: Callable[..., Any], outside_model: bool = False) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if outside_model and self.in_model:
                return call(*args, **kwargs)
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.add(kind, time.perf_counter() - start)
        return wrapper


@contextmanager
def patched(targets: list[tuple[Any, str]], wrap: Callable[[Any, str, Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    try:
        for owner, name, original in saved:
            setattr(owner, name, wrap(owner, name, original))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


@contextmanager
def profiling(model: Any, tokenizer: Any, profile: Profile) -> Iterator[None]:
    """Every wrapper and hook in place for the duration; all removed after."""
    pending: list[tuple[str, int, int, float]] = []

    def before(module: Any, args: tuple, kwargs: dict) -> None:
        ids, mask, cache = kwargs["input_ids"], kwargs.get("attention_mask"), kwargs.get("cache")
        rows, new = ids.shape
        real = int(mask[:, -new:].sum()) if mask is not None else rows * new
        kind = "decode" if new == 1 else "score" if cache is not None and cache.get_seq_length() > 0 else "prefill"
        profile.in_model += 1
        pending.append((kind, rows * new, real, time.perf_counter()))

    def after(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        kind, positions, real, start = pending.pop()
        profile.in_model -= 1
        profile.add(kind, time.perf_counter() - start)
        profile.counts[profile.probe, "positions"] += positions
        profile.counts[profile.probe, "tokens"] += real
        if kind == "decode":
            profile.counts[profile.probe, "decode rows"] += positions

    handles = [model.register_forward_pre_hook(before, with_kwargs=True),
               model.register_forward_hook(after, with_kwargs=True)]
    try:
        with patched(list(PROBES), lambda owner, name, f: profile.entered(PROBES[owner, name], f)), \
                patched(KV_CALLS, lambda owner, name, f: profile.kind("kv", f)), \
                patched(SOFTMAX_CALLS, lambda owner, name, f: profile.kind("softmax", f, outside_model=True)), \
                patched([(tokenizer, "decode")], lambda owner, name, f: profile.kind("tokenizer", f)):
            yield
    finally:
        for handle in handles:
            handle.remove()


def phase_recorder() -> tuple[Callable[[str, int, int], None], dict[str, float]]:
    last: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        last[phase] = time.perf_counter()
    return progress, last


def table(profile: Profile, total: float) -> list[str]:
    """Probes as rows, kinds of work as columns (seconds), then steps, rows per step and padding."""
    probes = [label for label in dict.fromkeys(PROBES.values()) if profile.wall.get(label)]
    head = f"{'probe':<16}{'wall s':>8}" + "".join(f"{k:>10}" for k in (*KINDS, "other")) + \
        f"{'steps':>8}{'rows/step':>10}{'padding':>9}"
    lines = [head]
    sums: dict[str, float] = defaultdict(float)
    for label in probes:
        wall = profile.wall[label]
        parts = {k: profile.seconds[label, k] for k in KINDS}
        parts["other"] = wall - sum(parts.values())
        steps = profile.counts[label, "decode"]
        rows = profile.counts[label, "decode rows"] / steps if steps else 0.0
        positions = profile.counts[label, "positions"]
        padding = 1 - profile.counts[label, "tokens"] / positions if positions else 0.0
        for k, v in parts.items():
            sums[k] += v
        sums["wall"] += wall
        lines.append(f"{label:<16}{wall:8.1f}" + "".join(f"{parts[k]:10.1f}" for k in (*KINDS, "other"))
                     + f"{steps:8d}{rows:10.1f}{padding:9.0%}")
    lines.append(f"{'all probes':<16}{sums['wall']:8.1f}" + "".join(f"{sums[k]:10.1f}" for k in (*KINDS, "other"))
                 + f"   (run wall {total:.1f} s)")
    share = {k: sums[k] / sums["wall"] for k in (*KINDS, "other")} if sums["wall"] else {}
    lines.append("share of the probes' time: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    return lines


def profile_model(alias: str, items_n: int, data: str, dtype: str, batch_size: int) -> dict[str, Any]:
    settings = ProbeSettings(decode=DecodeSettings(batch_size=batch_size), items_per_language=items_n)
    items = prepare_items(load_dataset(data), ["en"], settings)
    loaded = load_model(alias, device="cpu", dtype=dtype)
    backend = HFBackend(loaded.model, loaded.tokenizer)
    probe_model(backend, items[:1], settings)  # warm-up, unprofiled
    profile, (progress, last) = Profile(), phase_recorder()
    with profiling(loaded.model, loaded.tokenizer, profile):
        start = time.perf_counter()
        probe_model(backend, items, settings, progress)
        total = time.perf_counter() - start
    phases, previous = {}, start
    for phase, end in sorted(last.items(), key=lambda kv: kv[1]):
        phases[phase], previous = round(end - previous, 2), end
    print(f"\n{alias} ({dtype}, CPU, {len(items)} XQuAD en items, batch size {batch_size}, "
          f"torch threads {torch.get_num_threads()}): {total:.1f} s")
    print("phases: " + ", ".join(f"{name} {s:.1f} s" for name, s in phases.items()))
    for line in table(profile, total):
        print(line)
    record = {"model": alias, "dtype": dtype, "items": len(items), "seconds": round(total, 2), "phases": phases,
              "probes": {label: {"wall": round(profile.wall[label], 2),
                                 **{k: round(profile.seconds[label, k], 2) for k in KINDS},
                                 "steps": profile.counts[label, "decode"],
                                 "decode_rows": profile.counts[label, "decode rows"],
                                 "positions": profile.counts[label, "positions"],
                                 "tokens": profile.counts[label, "tokens"]}
                         for label in dict.fromkeys(PROBES.values()) if profile.wall.get(label)}}
    print("PROFILE " + json.dumps(record), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--data", default=str(XQUAD_EN))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--batch-size", type=int, default=DecodeSettings().batch_size)
    args = parser.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"--data {args.data}: no such file (XQuAD lives in ../shared/xquad)")
    for alias in args.models.split(","):
        profile_model(alias, args.items, args.data, args.dtype, args.batch_size)


if __name__ == "__main__":
    main()
