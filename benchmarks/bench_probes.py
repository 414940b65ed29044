"""Time the probe engine against lm-evaluation-harness and a naive loop on XQuAD English (issue 6).

For each model (CPU, fp32) and the same N items, one run times:
  (a) the engine's full probe set (engine.probe_model: FF, MC, rank, beam-5, 10 samples, CS,
      1-shot, and the 0-shot-short FF it always adds);
  (b) the engine doing only MC + greedy FF (ff_probes with reach all False), and its MC path
      alone (prefill + option scoring, no generation);
  (c) lm-eval's HF backend on the same prompts: four `loglikelihood` requests per item and one
      greedy `generate_until` (until "\\n", 32 new tokens), in its own virtual environment;
  (d) a naive loop: per item one `generate` and four full forward passes.
  (v) with --vllm (on by default when ILLUSION_VLLM_PYTHON is set): the same full probe set as
      (a), same items and settings, through the vLLM backend (backends/vllm: vLLM in a worker
      process under $ILLUSION_VLLM_PYTHON, CPU fp32). It loads only after (a)-(d) are done and
      the HF model is freed (never both resident); its load and a one-item warm-up (like (a)'s;
      vLLM's prefix cache may keep that item's prompts) are timed apart from the row.
It prints the times, the ratios, processed tokens/s (padding excluded) and their FLOP rate as a
fraction of a measured fp32 matmul peak, and checks (a)/(b) against (c) on MC choices and
greedy answers. The FLOP counter hooks the in-process torch model, so it cannot see inside
vLLM's worker: (v) has its wall time, per-phase times and ratios (v/a, v/c) only, "–" in the
counted columns, and is checked against (a) on MC choice, greedy FF output and gold rank.
The last line is machine-readable (times and agreement pooled over the models; the vLLM time,
load time and agreement with (a) when (v) ran).

    python3 -m venv .bench-venv && .bench-venv/bin/pip install torch==2.13.0 "lm-eval[hf]"
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_probes.py [--items 100] [--models ...]
    # with the vLLM row (`make vllm` builds .venv-vllm), without lm-eval's environment:
    ILLUSION_VLLM_PYTHON=.venv-vllm/bin/python OMP_WAIT_POLICY=PASSIVE \\
        .venv/bin/python benchmarks/bench_probes.py --items 10 --models smollm2-135m --no-lmeval
--no-lmeval skips (c) ("–" in its rows, no ratio or agreement against it); --no-vllm skips (v);
--vllm-args '{"enable_chunked_prefill": false}' passes extra vLLM engine arguments to (v) (vLLM 0.32
on the CPU fails seeded sampling when a prompt's prefill is chunked: "CPU Generator does not use
offset"; this works around it until the backend does).

On the project's 2-core CPU, 30 items took 12.5 minutes for both models together (idle machine),
so the default 100 items take about 40 minutes. The matmul peak is the best of measurements
before and after each model: with neighbours busy a single measurement can read 2x low.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, replace
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
from illusion_checks.backends.base import DecodeSettings, LoadOptions, answer_text
from illusion_checks.backends.vllm.backend import PYTHON_ENV, VLLMBackend, vllm_python
from illusion_checks.errors import VLLMError
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
        prompt, _, _ = P.fit_context(tokenizer, build, p.item.context, ps.max_prompt_tokens)
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
                                       [([], [])] * len(part))  # no rank row is read
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
class VLLMBench:
    """(v): the vLLM backend's full probe set (wall seconds only) and its agreement with (a)."""

    version: str
    load_seconds: float
    warmup_seconds: float
    seconds: float
    phases: dict[str, float]
    agree_mc: int
    agree_ff: int
    agree_rank: int
    max_score_delta: float
    disagreements: list[str]


@dataclass(frozen=True)
class ModelBench:
    """One model's timings, phase breakdown, agreement checks and disagreement lines.
    Without lm-eval (--no-lmeval) `timings` has no "c"/"ll"/"gen" and the agreement lists are empty."""

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
    vllm: VLLMBench | None = None

    @property
    def has_lmeval(self) -> bool:
        return "c" in self.timings


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


def bench_model(alias: str, items_n: int, data: str, batch_size: int, lmeval_python: Path | None,
                vllm: dict[str, Any] | None) -> ModelBench:
    """Every timed variant for one model, on the same items and prompts; (v) after the HF model is freed."""
    settings = ProbeSettings(decode=DecodeSettings(batch_size=batch_size), items_per_language=items_n)
    items = prepare_items(load_dataset(data), ["en"], settings)
    bench, full, model_ref = bench_hf(alias, items, settings, lmeval_python)
    if vllm is None:
        return bench
    gc.collect()
    if model_ref() is not None:
        raise RuntimeError(f"{alias}: the HF model is still referenced; it must be freed before vLLM loads")
    return replace(bench, vllm=bench_vllm(alias, items, settings, full, vllm))


def bench_hf(alias: str, items: Sequence[PreparedItem], settings: ProbeSettings,
             lmeval_python: Path | None) -> tuple[ModelBench, list[dict[str, Any]], "weakref.ref[Any]"]:
    """(a), (b), MC alone, (d) and, unless skipped, (c); the model is only weakly referenced on return."""
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
    timings = {"a": t_full, "b": t_mcff, "mc": t_mc, "d": t_naive}
    agree_mc, agree_ff, strict, lines, delta = [], [], 0, [], float("nan")
    if lmeval_python is not None:
        log(f"{alias}: (c) lm-eval")
        lmeval = run_lmeval(lmeval_python, resolve_source(alias)[0], texts, items, settings.decode.batch_size,
                            decode.max_new_tokens)
        agree_mc, agree_ff, strict, lines, delta = compare(items, full, mcff, lmeval)
        t_ll, t_gen = lmeval_timing(lmeval, "loglikelihood"), lmeval_timing(lmeval, "generate_until")
        timings.update(c=t_ll.plus(t_gen), ll=t_ll, gen=t_gen)
    fallbacks = sum(not e.gold_token_boundary_ok for e in encoded)
    bench = ModelBench(alias, n, timings, phases, agree_mc, agree_ff, strict, lines, delta, fallbacks)
    return bench, full, weakref.ref(model)


def bench_vllm(alias: str, items: Sequence[PreparedItem], settings: ProbeSettings,
               full: Sequence[dict[str, Any]], engine_args: dict[str, Any]) -> VLLMBench:
    """(v): load the model in vLLM's worker (extra vLLM engine arguments: --vllm-args), warm up on one
    item, then time the full probe set."""
    log(f"{alias}: (v) loading vLLM")
    start = time.perf_counter()
    backend = VLLMBackend(resolve_source(alias)[0], LoadOptions("cpu", "float32"), args=dict(engine_args))
    load_seconds = time.perf_counter() - start
    try:
        log(f"{alias}: (v) warm-up (one item's probes)")
        start = time.perf_counter()
        probe_model(backend, items[:1], settings)
        warmup_seconds = time.perf_counter() - start
        log(f"{alias}: (v) full probe set on {len(items)} items")
        progress, last = phase_recorder()
        start = time.perf_counter()
        ours = probe_model(backend, items, settings, progress)
        seconds = time.perf_counter() - start
        phases = phase_seconds(start, last)
        version = str(backend.info["version"])
    finally:
        backend.close()
    return VLLMBench(version, load_seconds, warmup_seconds, seconds, phases, *compare_vllm(items, full, ours))


def compare_vllm(items: Sequence[PreparedItem], full: Sequence[dict[str, Any]],
                 ours: Sequence[dict[str, Any]]) -> tuple[int, int, int, float, list[str]]:
    """(v) against (a), per item: same MC choice, same greedy FF output, same gold rank; max |Δ score|."""
    same_mc = same_ff = same_rank = 0
    delta, lines = 0.0, []
    for p, a, v in zip(items, full, ours):
        mc, ff = a["mc"]["choice"] == v["mc"]["choice"], a["ff"]["output"] == v["ff"]["output"]
        rank = a["gold_rank"] == v["gold_rank"]
        same_mc, same_ff, same_rank = same_mc + mc, same_ff + ff, same_rank + rank
        delta = max(delta, *(abs(x - y) for x, y in zip(a["mc"]["scores"], v["mc"]["scores"])))
        if not (mc and ff and rank):
            lines.append(f"  (v) item {p.item.id}: MC (a) {a['mc']['choice']} (v) {v['mc']['choice']}; "
                         f"FF (a) {a['ff']['output']!r} (v) {v['ff']['output']!r}; "
                         f"gold rank (a) {a['gold_rank']} (v) {v['gold_rank']}")
    return same_mc, same_ff, same_rank, delta, lines


LABELS = {
    "a": "(a) engine: full probe set", "b": "(b) engine: MC + greedy FF", "mc": "    engine: MC alone",
    "c": "(c) lm-eval: MC + greedy", "ll": "    lm-eval: loglikelihood", "gen": "    lm-eval: generate_until",
    "d": "(d) naive loop",
}
VLLM_LABEL = "(v) vLLM backend: full probe set"
LABEL_WIDTH = 34
COLUMNS = (("seconds", 9), ("tokens", 9), ("tok/s", 8), ("GFLOP/s", 9), ("of peak", 8), ("padding", 8),
           ("in model", 9), ("decode", 8), ("rows/step", 10))
DASH = "–"


def timing_row(label: str, t: Timing, peak: float) -> str:
    """One table row: time, tokens and rate, then where the time went (padding, decoding steps)."""
    w, rate = t.work, t.work.flops / t.seconds
    rows_per_step = w.step_rows / w.steps if w.steps else 0.0
    return (f"{label:<{LABEL_WIDTH}}{t.seconds:9.1f}{w.tokens:>9}{w.tokens / t.seconds:>8.0f}{rate / 1e9:>9.1f}"
            f"{rate / peak:>8.1%}{1 - w.tokens / max(1, w.positions):>8.0%}{w.forward_seconds / t.seconds:>9.0%}"
            f"{w.step_seconds / t.seconds:>8.0%}{rows_per_step:>10.1f}")


def dash_row(label: str, seconds: float | None) -> str:
    """A row with only a wall time (or none): "–" where nothing was counted or nothing ran."""
    first = f"{seconds:9.1f}" if seconds is not None else f"{DASH:>9}"
    return f"{label:<{LABEL_WIDTH}}{first}" + "".join(f"{DASH:>{width}}" for _, width in COLUMNS[1:])


TABLE_HEAD = f"{'':<{LABEL_WIDTH}}" + "".join(f"{name:>{width}}" for name, width in COLUMNS)


def ratio_parts(bench: ModelBench) -> list[str]:
    """The ratios line's entries: against lm-eval when it ran, and (v) against (a) and (c)."""
    t, parts = bench.timings, []
    if bench.has_lmeval:
        parts += [f"a/c={t['a'].seconds / t['c'].seconds:.2f}", f"b/c={t['b'].seconds / t['c'].seconds:.2f}",
                  f"MC throughput vs lm-eval loglikelihood={t['ll'].seconds / t['mc'].seconds:.2f}x",
                  f"naive/c={t['d'].seconds / t['c'].seconds:.2f}"]
    if bench.vllm is not None:
        parts.append(f"v/a={bench.vllm.seconds / t['a'].seconds:.2f}")
        if bench.has_lmeval:
            parts.append(f"v/c={bench.vllm.seconds / t['c'].seconds:.2f}")
    return parts or [f"{DASH} (lm-eval skipped)"]


def lmeval_lines(bench: ModelBench) -> list[str]:
    """Agreement of (a)/(b) with lm-eval, and its disagreement lines; a dash when (c) was skipped."""
    n = bench.n_items
    if not bench.has_lmeval:
        return [f"agreement with lm-eval: {DASH} (skipped, --no-lmeval); "
                f"boundary-check fallbacks {bench.boundary_fallbacks}"]
    return [f"agreement with lm-eval: MC {sum(bench.agree_mc)}/{n}, greedy FF {sum(bench.agree_ff)}/{n} "
            f"({bench.agree_ff_literal}/{n} against lm-eval's literal answer); "
            f"max |option log-prob difference| {bench.max_score_delta:.2e}; "
            f"boundary-check fallbacks {bench.boundary_fallbacks}"] + (bench.disagreements or ["  no disagreement"])


def vllm_lines(v: VLLMBench, n: int) -> list[str]:
    """(v)'s load, warm-up and phase times, and its agreement with (a)."""
    return [f"(v) vLLM {v.version}: load {v.load_seconds:.1f} s, warm-up {v.warmup_seconds:.1f} s (one item's "
            "probes), neither in the row",
            "(v) phases: " + ", ".join(f"{name} {s:.1f} s" for name, s in v.phases.items()),
            f"agreement of (v) with (a): MC choice {v.agree_mc}/{n}, greedy FF output {v.agree_ff}/{n}, "
            f"gold rank {v.agree_rank}/{n}; max |option log-prob difference| {v.max_score_delta:.2e}",
            ] + (v.disagreements or ["  no disagreement"])


def report_model(bench: ModelBench, peak: float) -> list[str]:
    """The human-readable block for one model."""
    t, n = bench.timings, bench.n_items
    lines = [f"== {bench.alias}: {n} items of XQuAD en, CPU fp32, {torch.get_num_threads()} threads",
             TABLE_HEAD]
    lines += [timing_row(LABELS[key], t[key], peak) if key in t else dash_row(LABELS[key], None) for key in LABELS]
    if bench.vllm is not None:
        lines.append(dash_row(VLLM_LABEL, bench.vllm.seconds))
    lines.append("(a) phases: " + ", ".join(f"{name} {s:.1f} s" for name, s in bench.phases.items()))
    lines.append("ratios: " + " ".join(ratio_parts(bench)))
    lines += lmeval_lines(bench)
    if bench.vllm is not None:
        lines += vllm_lines(bench.vllm, n)
    return lines


def pooled(benches: Sequence[ModelBench], key: str) -> Timing:
    """One timing summed over the models."""
    out = Timing(0.0, Work())
    for b in benches:
        out = out.plus(b.timings[key])
    return out


def result_line(benches: Sequence[ModelBench], peak: float) -> str:
    """The machine-readable last line: times and agreement pooled over all models ((c) and (v) when run)."""
    a, n = pooled(benches, "a"), sum(x.n_items for x in benches)
    lmeval = all(x.has_lmeval for x in benches)
    parts = []
    if lmeval:
        b, c, mc, ll = (pooled(benches, k) for k in ("b", "c", "mc", "ll"))
        parts += [f"full_vs_lmeval={a.seconds / c.seconds:.3f}", f"mcff_vs_lmeval={b.seconds / c.seconds:.3f}",
                  f"mc_vs_lmeval_ll={ll.seconds / mc.seconds:.3f}"]
    else:
        parts.append(f"full_seconds={a.seconds:.1f}")
    parts.append(f"peak_fraction={a.work.flops / a.seconds / peak:.3f}")
    if lmeval:
        parts += [f"agree_mc={sum(sum(x.agree_mc) for x in benches) / n:.3f}",
                  f"agree_ff={sum(sum(x.agree_ff) for x in benches) / n:.3f}"]
    runs = [x.vllm for x in benches if x.vllm is not None]
    if runs and len(runs) == len(benches):
        v = sum(r.seconds for r in runs)
        parts += [f"vllm_seconds={v:.1f}", f"vllm_load_seconds={sum(r.load_seconds for r in runs):.1f}",
                  f"vllm_vs_full={v / a.seconds:.3f}"]
        if lmeval:
            parts.append(f"vllm_vs_lmeval={v / pooled(benches, 'c').seconds:.3f}")
        parts += [f"agree_vllm_mc={sum(r.agree_mc for r in runs) / n:.3f}",
                  f"agree_vllm_ff={sum(r.agree_ff for r in runs) / n:.3f}",
                  f"agree_vllm_rank={sum(r.agree_rank for r in runs) / n:.3f}"]
    return "RESULT " + " ".join(parts)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m", help="comma-separated model aliases")
    parser.add_argument("--items", type=int, default=100, help="XQuAD English items per model")
    parser.add_argument("--data", default=str(XQUAD_EN))
    parser.add_argument("--batch-size", type=int, default=DecodeSettings().batch_size,
                        help="the engine's batch size, and lm-eval's")
    parser.add_argument("--lmeval-python", type=Path, default=LMEVAL_PYTHON,
                        help="python of the virtual environment holding lm-eval[hf]")
    parser.add_argument("--no-lmeval", action="store_true",
                        help="skip (c), lm-eval (e.g. without its environment): '–' in its rows, no ratios against it")
    parser.add_argument("--vllm", action=argparse.BooleanOptionalAction, default=bool(os.environ.get(PYTHON_ENV)),
                        help=f"add (v), the vLLM backend's full probe set (default: on when ${PYTHON_ENV} is set)")
    parser.add_argument("--vllm-args", type=json.loads, default={},
                        help="extra vLLM engine arguments for (v), a JSON object (default: none, the backend's own)")
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


def check_environments(args: argparse.Namespace) -> tuple[Path | None, str]:
    """lm-eval's python (None with --no-lmeval) and the vLLM worker's python ('' without --vllm),
    checked before any model loads."""
    lmeval_python = None if args.no_lmeval else args.lmeval_python
    if lmeval_python is not None and not lmeval_python.is_file():
        sys.exit(f"--lmeval-python: {lmeval_python} does not exist; create it with "
                 "python3 -m venv .bench-venv && .bench-venv/bin/pip install torch==2.13.0 'lm-eval[hf]' "
                 "(or pass --no-lmeval to skip (c))")
    worker_python = ""
    if not isinstance(args.vllm_args, dict):
        sys.exit(f"--vllm-args: expected a JSON object, got {args.vllm_args!r}")
    if args.vllm:
        try:
            worker_python = vllm_python()
        except VLLMError as error:
            sys.exit(f"--vllm: {error}")
    return lmeval_python, worker_python


def main() -> None:
    args = parse_args()
    lmeval_python, worker_python = check_environments(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    who = "engine and lm-eval" if lmeval_python is not None else "engine; lm-eval skipped"
    print(f"engine: illusion_checks at {engine_revision()}; batch size {args.batch_size} ({who})"
          + (f"; (v) vLLM worker under {worker_python}, extra engine args {args.vllm_args}" if args.vllm else ""))
    # The CPU is shared: the best of several peak measurements is the closest to the true peak.
    peaks = [matmul_peak()]
    benches = []
    for alias in args.models.split(","):
        vllm = dict(args.vllm_args) if args.vllm else None
        benches.append(bench_model(alias, args.items, args.data, args.batch_size, lmeval_python, vllm))
        peaks.append(matmul_peak())
    for bench in benches:
        print("\n".join(report_model(bench, max(peaks))))
    print(f"fp32 matmul peak: {max(peaks) / 1e9:.1f} GFLOP/s (best of {', '.join(f'{p / 1e9:.0f}' for p in peaks)}; "
          f"2048x2048, {torch.get_num_threads()} threads). FLOPs counted: 2 x body params per real token, "
          "2 x LM-head params per logit row, 4 x layers x attention width per attended position; "
          "lm-eval's loglikelihood passes no mask, so its right padding counts as real tokens"
          + ("; (v) runs in vLLM's worker process, out of the counter's sight: wall time only" if args.vllm else ""))
    print(result_line(benches, max(peaks)))


if __name__ == "__main__":
    main()
