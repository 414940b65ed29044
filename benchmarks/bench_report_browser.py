"""Time the HTML report in headless Chromium at XQuAD's size: 9 languages x 200 items.

Prints the report's size, the time from navigation to the first item rows, and the time a fate
filter takes to redraw the list; asserts nothing (tests/report/test_report_browser.py checks the
same page works). Needs the Debian `chromium` package (`make browser`) and `playwright`.

    .venv/bin/python benchmarks/bench_report_browser.py [--items 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.helpers.synth builds the synthetic results

from illusion_checks.report import write_report  # noqa: E402
from tests.helpers.chromium import CHROMIUM  # noqa: E402
from tests.helpers.synth import make_results  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def time_page(browser, path: Path) -> tuple[float, float]:
    """(load seconds, filter seconds) for one fresh page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    start = time.perf_counter()
    page.goto(path.resolve().as_uri())
    page.wait_for_selector(".item-row")
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    page.select_option("#filter-fate", "mc_only")  # the change handler redraws the list synchronously
    page.evaluate("document.querySelectorAll('.item-row').length")
    filter_s = time.perf_counter() - start
    context.close()
    return load_s, filter_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="items per language")
    parser.add_argument("--repeats", type=int, default=3, help="report the fastest of this many page loads")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    results = make_results(items_per_language=args.items, n_resamples=50)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        write_report(path, results)
        size_mb = path.stat().st_size / 1e6
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            runs = [time_page(browser, path) for _ in range(args.repeats)]
            browser.close()
    loads, filters = zip(*runs)
    n_items = len(results["items"])
    print(f"report: {n_items} items, {size_mb:.1f} MB; load {min(loads):.2f} s, fate filter "
          f"{min(filters) * 1000:.0f} ms (fastest of {args.repeats}; loads: "
          f"{', '.join(f'{t:.2f}' for t in loads)} s)")


if __name__ == "__main__":
    main()
