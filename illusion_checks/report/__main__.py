"""`python -m illusion_checks.report RESULTS.json [-o OUT.html] [--sweep OTHER.json ...]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from illusion_checks.report.render import write_report


def _load(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise SystemExit(f"error: cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {path} is not valid JSON: {e}") from None


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
        write_report(output, _load(args.results), [_load(p) for p in args.sweep])
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
