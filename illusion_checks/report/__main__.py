"""`python -m illusion_checks.report RESULTS.json [-o OUT.html] [--sweep OTHER.json ...]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from illusion_checks.report.render import write_report
from illusion_checks.results import load_results


def main(argv: Sequence[str] | None = None) -> int:
    """Render RESULTS.json (plus optional sweep files) to an HTML fate report."""
    parser = argparse.ArgumentParser(prog="python -m illusion_checks.report", description=main.__doc__)
    parser.add_argument("results", help="results JSON written by an illusion-checks run")
    parser.add_argument("-o", "--output", help="HTML file to write (default: RESULTS with .html)")
    parser.add_argument("--sweep", nargs="+", default=[], metavar="OTHER.json",
                        help="results of other compression specs, same reference and dataset")
    args = parser.parse_args(argv)
    output = args.output or str(Path(args.results).with_suffix(".html"))
    try:
        write_report(output, load_results(args.results), [load_results(p) for p in args.sweep])
    except ValueError as e:  # ResultsError included: the message names the file and field
        raise SystemExit(f"error: {e}") from None
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
