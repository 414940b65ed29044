"""What a cached re-run of the demo costs, side by side with what it no longer pays.

CI re-gates often: when every outcome comes from the cache, the run should cost what pytest costs.
Runs `make demo`'s arguments (read from the Makefile) once to fill the cache (minutes if it is cold),
then times `--repeats` re-runs in fresh processes, next to a bare `pytest --version` and to importing
torch and transformers (what a cached run used to load).

    python benchmarks/cached_rerun.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def demo_args() -> list[str]:
    """The DEMO_ARGS of the Makefile, so the benchmark runs what `make demo` runs."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = re.search(r"^DEMO_ARGS := (.*?)(?<!\\)\n", text, re.S | re.M)
    assert block, "DEMO_ARGS not found in the Makefile"
    return block.group(1).replace("\\\n", " ").split()


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        gate = [sys.executable, "-m", "pytest", "illusion", "-p", "no:cacheprovider", "-q", *demo_args(),
                f"--illusion-report={out}/report.html", f"--illusion-json={out}/results.json"]
        first, log = timed(gate)
        print(f"first run (fills the cache if it is cold): {first:.1f} s", flush=True)
        runs = []
        for _ in range(args.repeats):
            seconds, log = timed(gate)
            runs.append(seconds)
        assert "models loaded: 0; from cache: reference, compressed" in log, log[-2000:]
    evaluated = re.search(r"evaluated in ([\d.]+)s", log)
    bare = statistics.median(timed([sys.executable, "-m", "pytest", "--version"])[0] for _ in range(args.repeats))
    heavy = statistics.median(timed([sys.executable, "-c", "import torch, transformers"])[0]
                              for _ in range(args.repeats))
    rerun = statistics.median(runs)
    print(f"cached re-run, whole process (median of {args.repeats}): {rerun:.2f} s "
          f"(evaluation {evaluated.group(1) if evaluated else '?'} s of it)")
    print(f"bare `pytest --version`: {bare:.2f} s; cached re-run / bare pytest: {rerun / bare:.1f}x")
    print(f"importing torch + transformers alone: {heavy:.2f} s; that / cached re-run: {heavy / rerun:.1f}x")


if __name__ == "__main__":
    main()
