"""Time the probe engine against lm-evaluation-harness and a naive loop on XQuAD English (issue 6).

For each model (CPU, fp32) and the same N items, one run times:
  (a) the engine's full probe set (engine.probe_model: FF, MC, rank, beam-5, 10 samples, CS,
      1-shot, and the 0-shot-short FF it always adds);
  (b) the engine doing only MC + greedy FF (ff_probes with reach all False), and its MC path
      alone (prefill + option scoring, no generation);
  (c) lm-eval's HF backend on the same prompts: four `loglikelihood` requests per item and one
      greedy `generate_until` (until "\\n", 32 new tokens), in its own virtual environment;
  (d) a naive loop: per item one `generate` and four full forward passes.
It prints the times, the ratios, processed tokens/s (padding excluded) and their FLOP rate as a
fraction of a measured fp32 matmul peak, and checks (a)/(b) against (c) on MC choices and
greedy answers. The last line is machine-readable (times and agreement pooled over the models).

    python3 -m venv .bench-venv && .bench-venv/bin/pip install torch==2.13.0 "lm-eval[hf]"
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_probes.py [--items 100] [--models ...]

On the project's 2-core CPU, 30 items took 12.5 minutes for both models together (idle machine),
so the default 100 items take about 40 minutes. The matmul peak is the best of measurements
before and after each model: with neighbours busy a single measurement can read 2x low.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from flop_count import ModelShape, Work, WorkCounter, matmul_peak
from naive_probes import naive_loop

from illusion_checks.backends.hf.backend import HFBackend
from illusion_checks.backends.hf import prefix as probes
from illusion_checks import prompts as P
from illusion_checks.datasets import load_dataset
from illusion_checks.probing import PreparedItem, ProbeSettings, prepare_items, probe_model
from illusion_checks.backends.hf.load import load_model, resolve_source
from illusion_checks.backends.base import DecodeSettings, answer_text
from illusion_checks.backends.hf.prefix import MCResult
from illusion_checks.probing import item_seed
from illusion_checks.prompts import Encoded, encode_continuations, encode_prompt

HERE = Path(__file__).resolve().parent
XQUAD_EN = HERE.parents[1] / "shared" / "xquad" / "xquad.en.json"
LMEVAL_PYTHON = HERE.parent / ".bench-venv" / "bin" / "python"
STARTED = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the report."""
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Timing:
    """Wall seconds of one timed call and the model work counted during it."""

    seconds: float
    work: Work

    def plus(self, other: "Timing") -> "Timing":
        return Timing(self.seconds + other.seconds, self.work.add(other.work))


def timed(model: Any, shape: ModelShape, call: Callable[[], Any]) -> tuple[Any, Timing]:
    """Run `call`, timing it and counting the model's forward-pass work."""
    with WorkCounter(model, shape) as counter:
        start = time.perf_counter()
        out = call()
        seconds = time.perf_counter() - start
    return out, Timing(seconds, counter.work)


def ff_prompts(tokenizer: Any, items: Sequence[PreparedItem], settings: ProbeSettings) -> tuple[list[str], list[Encoded]]:
    """The FF prompt texts and their option encodings, built as engine.probe_model builds them."""
    ps, texts, encoded = settings.prompts, [], []
    for p in items:
        build = lambda c, q=p.item.question: P.wrap(tokenizer, P.ff_prompt(c, q), ps)  # noqa: E731
        prompt, _ = P.fit_context(tokenizer, build, p.item.context, ps.max_prompt_tokens)
        ids = encode_prompt(tokenizer, prompt, ps.chat_template)
        texts.append(prompt)
        encoded.append(encode_continuations(tokenizer, prompt, ids, p.options, ps.chat_template))
    return texts, encoded


@torch.no_grad()
def mc_only(model: Any, tokenizer: Any, encoded: Sequence[Encoded], golds: Sequence[Sequence[str]],
            decode: DecodeSettings) -> list[MCResult]:
    """The engine's MC path alone, batched as ff_probes batches it: one prefill, then options."""
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i].prompt_ids), i))
    results: dict[int, MCResult] = {}
    for start in range(0, len(order), decode.batch_size):
        batch = order[start:start + decode.batch_size]
        prefix = probes.prefill(model, [encoded[i].prompt_ids for i in batch], tokenizer.pad_token_id)
        half = max(1, decode.batch_size // 2)
        for lo in range(0, len(batch), half):
            part = list(range(lo, min(lo + half, len(batch))))
            # score_rows is exactly the MC step ff_probes runs.
            scored = probes.score_rows(model, prefix.rows(part), [encoded[batch[j]].option_ids for j in part],
                                       [([], None)] * len(part))  # no rank row is read
            results.update(zip((batch[j] for j in part), scored))
    return [results[i] for i in range(len(encoded))]


def run_lmeval(python: Path, model_dir: str, prompts: Sequence[str], items: Sequence[PreparedItem],
               batch_size: int, max_gen_toks: int) -> dict[str, Any]:
    """lm-eval's HF backend on the same prompts and options, in its own environment."""
    spec = {"model_dir": model_dir, "batch_size": batch_size, "max_gen_toks": max_gen_toks,
            "items": [{"prompt": prompt, "options": [" " + o for o in p.options]} for prompt, p in zip(prompts, items)]}
    with tempfile.TemporaryDirectory() as tmp:
        request, result = Path(tmp) / "requests.json", Path(tmp) / "results.json"
        request.write_text(json.dumps(spec))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        done = subprocess.run([str(python), str(HERE / "lmeval_runner.py"), str(request), str(result)],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"lm-eval runner failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return json.loads(result.read_text())


def lmeval_timing(out: dict[str, Any], kind: str) -> Timing:
    """A Timing from the runner's seconds and work for one request type."""
    return Timing(out["seconds"][kind], Work.from_dict(out["work"][kind]))


def argmax(scores: Sequence[float]) -> int:
    """The chosen option, first on ties (the engine's rule)."""
    return max(range(len(scores)), key=lambda k: scores[k])


@dataclass(frozen=True)
class ModelBench:
    """One model's timings, phase breakdown, agreement checks and disagreement lines."""

    alias: str
    n_items: int
    timings: dict[str, Timing]
    phases: dict[str, float]
    agree_mc: list[bool]
    agree_ff: list[bool]
    agree_ff_literal: int
    disagreements: list[str]
    max_score_delta: float
    boundary_fallbacks: int


def phase_recorder() -> tuple[Callable[[str, int, int], None], dict[str, float]]:
    """A probe_model progress callback that notes when each phase last ticked."""
    last: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        last[phase] = time.perf_counter()
    return progress, last


def phase_seconds(start: float, last: dict[str, float]) -> dict[str, float]:
    """Phases run one after another: each lasts from the previous one's last tick to its own."""
    out, previous = {}, start
    for phase, end in sorted(last.items(), key=lambda kv: kv[1]):
        out[phase], previous = end - previous, end
    return out


def compare(items: Sequence[PreparedItem], full: list[dict[str, Any]], mcff: list[probes.FFProbes],
            lmeval: dict[str, Any]) -> tuple[list[bool], list[bool], int, list[str], float]:
    """Per item: do (a) and (b) both match lm-eval's MC choice and its greedy answer? Also the
    count matching lm-eval's literal answer (empty after a leading newline), lines, max |Δ score|."""
    agree_mc, agree_ff, strict, lines, delta = [], [], 0, [], 0.0
    for i, p in enumerate(items):
        theirs = lmeval["scores"][i]
        raw = lmeval["generations"][i]
        theirs_ff = answer_text(raw if raw.strip() else lmeval["untruncated"].get(str(i), ""), True)
        ours = [full[i]["mc"]["scores"], mcff[i].mc.scores]
        delta = max(delta, *(abs(a - b) for s in ours for a, b in zip(s, theirs)))
        mc_ok = all(argmax(s) == argmax(theirs) for s in ours)
        answers = [full[i]["ff"]["output"], mcff[i].output]
        ff_ok = all(a == theirs_ff for a in answers)
        strict += all(a == answer_text(raw, True) for a in answers)
        agree_mc.append(mc_ok)
        agree_ff.append(ff_ok)
        if not raw.strip():
            lines.append(f"  note: item {p.item.id}: lm-eval's answer is empty (the model starts with a newline); "
                         f"compared on its first non-empty line {theirs_ff!r}: {'same' if ff_ok else 'differs'}")
        if not mc_ok:
            lines.append(f"  MC item {p.item.id}: engine (a) {argmax(ours[0])} (b) {argmax(ours[1])} "
                         f"{[round(s, 3) for s in ours[0]]} vs lm-eval {argmax(theirs)} {[round(s, 3) for s in theirs]}")
        if not ff_ok:
            lines.append(f"  FF item {p.item.id}: engine (a) {answers[0]!r} (b) {answers[1]!r} vs lm-eval {theirs_ff!r}")
    return agree_mc, agree_ff, strict, lines, delta


def bench_model(alias: str, items_n: int, data: str, batch_size: int, lmeval_python: Path) -> ModelBench:
    """Every timed variant for one model, on the same items and prompts."""
    settings = ProbeSettings(decode=DecodeSettings(batch_size=batch_size), items_per_language=items_n)
    items = prepare_items(load_dataset(data), ["en"], settings)
    loaded = load_model(alias, device="cpu", dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    shape = ModelShape.of(model)
    texts, encoded = ff_prompts(tok, items, settings)
    gold = [p.item.golds for p in items]
    seeds = [item_seed(settings.seed, f"{p.item.lang}:{p.item.id}") for p in items]
    decode, n = settings.decode, len(items)

    log(f"{alias}: warm-up")
    probes.ff_probes(model, tok, encoded[:1], gold[:1], decode, seeds[:1], [True])
    log(f"{alias}: (a) full probe set on {n} items")
    progress, last = phase_recorder()
    start = time.perf_counter()
    full, t_full = timed(model, shape, lambda: probe_model(HFBackend(model, tok), items, settings, progress))
    phases = phase_seconds(start, last)
    log(f"{alias}: (b) MC + FF")
    mcff, t_mcff = timed(model, shape, lambda: probes.ff_probes(model, tok, encoded, gold, decode, seeds, [False] * n))
    log(f"{alias}: MC alone")
    _, t_mc = timed(model, shape, lambda: mc_only(model, tok, encoded, gold, decode))
    log(f"{alias}: (d) naive loop")
    _, t_naive = timed(model, shape, lambda: naive_loop(model, tok, encoded, decode.max_new_tokens))
    log(f"{alias}: (c) lm-eval")
    lmeval = run_lmeval(lmeval_python, resolve_source(alias)[0], texts, items, batch_size, decode.max_new_tokens)
    agree_mc, agree_ff, strict, lines, delta = compare(items, full, mcff, lmeval)
    t_ll, t_gen = lmeval_timing(lmeval, "loglikelihood"), lmeval_timing(lmeval, "generate_until")
    timings = {"a": t_full, "b": t_mcff, "mc": t_mc, "c": t_ll.plus(t_gen), "ll": t_ll, "gen": t_gen, "d": t_naive}
    fallbacks = sum(not e.gold_token_boundary_ok for e in encoded)
    return ModelBench(alias, n, timings, phases, agree_mc, agree_ff, strict, lines, delta, fallbacks)


LABELS = {
    "a": "(a) engine: full probe set", "b": "(b) engine: MC + greedy FF", "mc": "    engine: MC alone",
    "c": "(c) lm-eval: MC + greedy", "ll": "    lm-eval: loglikelihood", "gen": "    lm-eval: generate_until",
    "d": "(d) naive loop",
}


def timing_row(label: str, t: Timing, peak: float) -> str:
    """One table row: time, tokens and rate, then where the time went (padding, decoding steps)."""
    w, rate = t.work, t.work.flops / t.seconds
    rows_per_step = w.step_rows / w.steps if w.steps else 0.0
    return (f"{label:<30}{t.seconds:9.1f}{w.tokens:>9}{w.tokens / t.seconds:>8.0f}{rate / 1e9:>9.1f}"
            f"{rate / peak:>8.1%}{1 - w.tokens / max(1, w.positions):>8.0%}{w.forward_seconds / t.seconds:>9.0%}"
            f"{w.step_seconds / t.seconds:>8.0%}{rows_per_step:>10.1f}")


TABLE_HEAD = (f"{'':<30}{'seconds':>9}{'tokens':>9}{'tok/s':>8}{'GFLOP/s':>9}{'of peak':>8}{'padding':>8}"
              f"{'in model':>9}{'decode':>8}{'rows/step':>10}")


def report_model(bench: ModelBench, peak: float) -> list[str]:
    """The human-readable block for one model."""
    t, n = bench.timings, bench.n_items
    lines = [f"== {bench.alias}: {n} items of XQuAD en, CPU fp32, {torch.get_num_threads()} threads",
             TABLE_HEAD]
    lines += [timing_row(LABELS[key], t[key], peak) for key in LABELS]
    lines.append("(a) phases: " + ", ".join(f"{name} {s:.1f} s" for name, s in bench.phases.items()))
    lines.append(f"ratios: a/c={t['a'].seconds / t['c'].seconds:.2f} b/c={t['b'].seconds / t['c'].seconds:.2f} "
                 f"MC throughput vs lm-eval loglikelihood={t['ll'].seconds / t['mc'].seconds:.2f}x "
                 f"naive/c={t['d'].seconds / t['c'].seconds:.2f}")
    lines.append(f"agreement with lm-eval: MC {sum(bench.agree_mc)}/{n}, greedy FF {sum(bench.agree_ff)}/{n} "
                 f"({bench.agree_ff_literal}/{n} against lm-eval's literal answer); "
                 f"max |option log-prob difference| {bench.max_score_delta:.2e}; "
                 f"boundary-check fallbacks {bench.boundary_fallbacks}")
    lines += bench.disagreements or ["  no disagreement"]
    return lines


def result_line(benches: Sequence[ModelBench], peak: float) -> str:
    """The machine-readable last line: times and agreement pooled over all models."""
    def total(key: str) -> Timing:
        out = Timing(0.0, Work())
        for b in benches:
            out = out.plus(b.timings[key])
        return out

    a, b, c, mc, ll = (total(k) for k in ("a", "b", "c", "mc", "ll"))
    n = sum(x.n_items for x in benches)
    agree_mc = sum(sum(x.agree_mc) for x in benches) / n
    agree_ff = sum(sum(x.agree_ff) for x in benches) / n
    return (f"RESULT full_vs_lmeval={a.seconds / c.seconds:.3f} mcff_vs_lmeval={b.seconds / c.seconds:.3f} "
            f"mc_vs_lmeval_ll={ll.seconds / mc.seconds:.3f} peak_fraction={a.work.flops / a.seconds / peak:.3f} "
            f"agree_mc={agree_mc:.3f} agree_ff={agree_ff:.3f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m", help="comma-separated model aliases")
    parser.add_argument("--items", type=int, default=100, help="XQuAD English items per model")
    parser.add_argument("--data", default=str(XQUAD_EN))
    parser.add_argument("--batch-size", type=int, default=DecodeSettings().batch_size,
                        help="the engine's batch size, and lm-eval's")
    parser.add_argument("--lmeval-python", type=Path, default=LMEVAL_PYTHON,
                        help="python of the virtual environment holding lm-eval[hf]")
    return parser.parse_args()


def engine_revision() -> str:
    """The checked-out commit, so timings can be tied to an engine version."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "illusion_checks"], cwd=HERE.parent,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        return f"unknown ({error})"
    return head.stdout.strip() + (" with uncommitted engine changes" if dirty.stdout.strip() else "")


def main() -> None:
    args = parse_args()
    if not args.lmeval_python.is_file():
        sys.exit(f"--lmeval-python: {args.lmeval_python} does not exist; create it with "
                 "python3 -m venv .bench-venv && .bench-venv/bin/pip install torch==2.13.0 'lm-eval[hf]'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"engine: illusion_checks at {engine_revision()}; batch size {args.batch_size} (engine and lm-eval)")
    # The CPU is shared: the best of several peak measurements is the closest to the true peak.
    peaks = [matmul_peak()]
    benches = []
    for alias in args.models.split(","):
        benches.append(bench_model(alias, args.items, args.data, args.batch_size, args.lmeval_python))
        peaks.append(matmul_peak())
    for bench in benches:
        print("\n".join(report_model(bench, max(peaks))))
    print(f"fp32 matmul peak: {max(peaks) / 1e9:.1f} GFLOP/s (best of {', '.join(f'{p / 1e9:.0f}' for p in peaks)}; "
          f"2048x2048, {torch.get_num_threads()} threads). FLOPs counted: 2 x body params per real token, "
          "2 x LM-head params per logit row, 4 x layers x attention width per attended position; "
          "lm-eval's loglikelihood passes no mask, so its right padding counts as real tokens")
    print(result_line(benches, max(peaks)))


if __name__ == "__main__":
    main()
