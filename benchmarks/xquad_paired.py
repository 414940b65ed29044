"""Paired run on real data: a reference model vs its pruned copy on ../shared/xquad.

    python benchmarks/xquad_paired.py --model gemma3-270m --compress magnitude:0.5 \
        --langs en,de,ru --items 50 --out reports/xquad-paired.json

Prints per-language FF / MC accuracy, both-correct counts, fates, dissociation and ΔPR, and the
wall time per item and model. Writes the results JSON (schema v1) and its HTML report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from illusion_checks import EvaluationSpec, evaluate

XQUAD = Path(__file__).resolve().parents[2] / "shared" / "xquad"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--compress", default="magnitude:0.5")
    parser.add_argument("--langs", default="en,de,ru")
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--data", default=str(XQUAD))
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--calibration-seqlen", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-reachability", action="store_true", help="skip beam-5 and sampling")
    parser.add_argument("--out", default="reports/xquad-paired.json")
    args = parser.parse_args()

    spec = EvaluationSpec(model=args.model, compress=args.compress, dataset=args.data, langs=args.langs,
                          items=args.items, batch_size=args.batch_size, no_cache=True, device="cpu", dtype="float32",
                          calibration_samples=args.calibration_samples, calibration_seqlen=args.calibration_seqlen,
                          no_reachability=args.no_reachability)
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def progress(phase: str, done: int, total: int) -> None:
        head = phase.split(":")[0]
        phases.setdefault(head, time.perf_counter())

    results = evaluate(spec, progress=progress, log=print, json_path=args.out,
                       report_path=Path(args.out).with_suffix(".html")).results
    wall = time.perf_counter() - started

    n = len(results["items"])
    marks = sorted(phases.items(), key=lambda kv: kv[1]) + [("end", time.perf_counter())]
    for (name, t0), (_, t1) in zip(marks, marks[1:]):
        print(f"phase {name:<18} {t1 - t0:7.1f} s")
    print(f"{'lang':<8}{'n':>4}{'FF ref':>8}{'FF cmp':>8}{'MC ref':>8}{'MC cmp':>8}{'both':>6}  fates (kept/mc_only/produced_only/lost)   dissociation [95% CI]   ΔPR [95% CI]")
    summary = results["summary"]
    for lang in [*sorted(summary["per_language"]), "overall"]:
        s = summary["overall"] if lang == "overall" else summary["per_language"][lang]
        acc, f = s["acc"], s["fates"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        ci = lambda c: "" if not c else f"[{c[0]:.2f}, {c[1]:.2f}]"  # noqa: E731
        print(f"{lang:<8}{s['n_items']:>4}{fmt(acc['reference']['ff']):>8}{fmt(acc['compressed']['ff']):>8}"
              f"{fmt(acc['reference']['mc']):>8}{fmt(acc['compressed']['mc']):>8}{s['n_both_correct']:>6}  "
              f"{f['kept']}/{f['mc_only']}/{f['produced_only']}/{f['lost']:<28} {fmt(s['dissociation_rate'])} {ci(s['dissociation_ci95']):<14} "
              f"{fmt(s['delta_pr'])} {ci(s['delta_pr_ci95'])}")
    print(f"wall {wall:.0f} s for {n} items x 2 models: {wall / n:.1f} s per item (both models), {wall / (2 * n):.1f} s per item and model")


if __name__ == "__main__":
    main()
