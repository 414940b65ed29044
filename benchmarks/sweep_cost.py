"""A sweep of several specs against the same specs run one at a time, side by side in one run.

    python benchmarks/sweep_cost.py --model gemma3-270m --specs wanda:0.3,wanda:0.5,sparsegpt:0.5,rtn-int4

Both sides start from an empty outcome cache (their own temporary folder), on the same items and
settings: the sweep probes the reference once; the separate runs probe it once each. Prints each
side's wall time, the ratio, the sweep's table (fates, dissociation, ΔPR, retention per spec) and
checks that both sides produced identical outcomes. `--json` writes the sweep's results (v2).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace

from illusion_checks import EvaluationSpec, GateSpec, evaluate


def _rate(value: float | None, ci: list[float] | None) -> str:
    return "-" if value is None else f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--specs", default="wanda:0.3,wanda:0.5,sparsegpt:0.5,rtn-int4")
    parser.add_argument("--dataset", default="fixtures")
    parser.add_argument("--langs", default=None)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--calibration", default="embedded")
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--calibration-seqlen", type=int, default=512)
    parser.add_argument("--max-dissociation", type=float, default=0.3)
    parser.add_argument("--no-reachability", action="store_true", help="skip beam-5 and sampling")
    parser.add_argument("--json", default=None, help="write the sweep's results (schema v2) here")
    parser.add_argument("--sweep-cache", default=None,
                        help="the sweep's outcome cache (default: a fresh temporary one); must start empty")
    args = parser.parse_args()

    base = EvaluationSpec(model=args.model, compress=args.specs, dataset=args.dataset, langs=args.langs,
                          items=args.items, device="cpu", dtype="float32", calibration=args.calibration,
                          calibration_samples=args.calibration_samples, calibration_seqlen=args.calibration_seqlen,
                          no_reachability=args.no_reachability)
    gates = GateSpec(max_dissociation=args.max_dissociation)
    with tempfile.TemporaryDirectory() as scratch:
        sweep_cache = args.sweep_cache or scratch
        started = time.perf_counter()
        sweep = evaluate(replace(base, cache_dir=sweep_cache), gates, json_path=args.json)
        sweep_seconds = time.perf_counter() - started
        print(f"sweep: {sweep_seconds:.0f} s", flush=True)
        singles, single_seconds = [], []
        for spec in base.compress_specs:
            with tempfile.TemporaryDirectory() as own:  # each separate run starts cold, as a CI job would
                started = time.perf_counter()
                singles.append(evaluate(replace(base, compress=spec, cache_dir=own), gates).results)
                single_seconds.append(time.perf_counter() - started)
                print(f"separate run {spec}: {single_seconds[-1]:.0f} s", flush=True)
    runs = sweep.results["runs"]
    same = all(json.dumps(run["items"], sort_keys=True) == json.dumps(one["items"], sort_keys=True)
               for run, one in zip(runs, singles))
    print(f"{args.model}, {len(runs[0]['items'])} items, specs {args.specs}"
          f"{' (no reachability probes)' if args.no_reachability else ''}")
    print(f"sweep (reference probed once): {sweep_seconds:.0f} s; models loaded {sweep.stats.models_loaded}")
    print(f"{len(singles)} separate runs: {sum(single_seconds):.0f} s ({', '.join(f'{s:.0f}' for s in single_seconds)})")
    print(f"separate / sweep: {sum(single_seconds) / sweep_seconds:.2f}x; identical outcomes: {same}")
    print(f"{'spec':<16}{'n':>4}{'kept':>6}{'mc_only':>9}{'prod_only':>11}{'lost':>6}  {'dissociation [95% CI]':<24}"
          f"{'ΔPR [95% CI]':<24}{'retention [95% CI]':<22}gates")
    for run in runs:
        s, gate_ok = run["summary"]["overall"], all(g["passed"] for g in run["gates"])
        fates = s["fates"]
        print(f"{run['config']['compressed']['spec']:<16}{s['n_both_correct']:>4}{fates['kept']:>6}{fates['mc_only']:>9}"
              f"{fates['produced_only']:>11}{fates['lost']:>6}  {_rate(s['dissociation_rate'], s['dissociation_ci95']):<24}"
              f"{_rate(s['delta_pr'], s['delta_pr_ci95']):<24}{_rate(s['retention'], s.get('retention_ci95')):<22}"
              f"{'pass' if gate_ok else 'FAIL'}")


if __name__ == "__main__":
    main()
