"""Time the paired bootstrap behind every confidence interval: 9 languages x 200 items, 1,000
resamples (XQuAD's size at the default item count). Prints the seconds; asserts nothing, since a
shared CI machine's timings say little (the issue's target is well under 2 s).

    .venv/bin/python benchmarks/bench_bootstrap.py [--items 200] [--resamples 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import time

from illusion_checks.metrics import summarize

LANGS = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")


def outcome(ff: bool, mc: bool) -> dict:
    """One model's outcome with only the fields summarize reads."""
    out: dict = {probe: {"correct": False, "output": ""} for probe in ("cs", "one_shot", "zero_shot_short")}
    out.update(ff={"correct": ff, "output": ""}, mc={"correct": mc}, gold_rank=1, beam=None, sample=None)
    return out


def synthetic_items(n_per_lang: int, seed: int = 3) -> list[dict]:
    """Items with a real dissociation signal: compression costs FF more often than MC."""
    rng = random.Random(seed)
    items = []
    for lang in LANGS:
        for i in range(n_per_lang):
            ref_ff, ref_mc = rng.random() < 0.7, rng.random() < 0.8
            comp_ff, comp_mc = ref_ff and rng.random() < 0.6, ref_mc and rng.random() < 0.95
            items.append({"id": f"{i:04d}", "lang": lang, "reference": outcome(ref_ff, ref_mc),
                          "compressed": outcome(comp_ff, comp_mc)})
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="items per language")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="report the fastest of this many runs")
    args = parser.parse_args()
    items = synthetic_items(args.items)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        summarize(items, n_resamples=args.resamples, seed=42)
        times.append(time.perf_counter() - start)
    print(f"summarize: {len(LANGS)} languages x {args.items} items, {args.resamples} resamples: "
          f"{min(times):.2f} s (fastest of {args.repeats}; all: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
