"""Report page speed: a 1,000-card report (4 layers x 250 units) opened in headless Chromium, then filtered.

    .venv/bin/python benchmarks/bench_report.py [--cards-per-layer 250] [--repeats 3]

Prints seconds to write the report, to open it (until the page says it is ready with every card),
and per filter (the medians of the repeats). This is the timing that tests/report/test_browser.py's
thousand-card test used to assert (< 10 s); a test only checks what the page shows.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cards-per-layer", type=int, default=250)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from conftest import build_run
    from playwright.sync_api import sync_playwright

    from unitscope.report import write_report

    names = ["dog", "cat", "red", "striped", "wood", "street", "eye"]
    n = args.cards_per_layer
    layers = {f"features.{i}": [(names[(u * 7 + i) % 7], (u % 50) / 400) for u in range(n)] for i in range(4)}
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    times: dict[str, list[float]] = {"write": [], "open": [], "filter": []}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for r in range(args.repeats):
            run = build_run(Path(tmp) / f"run{r}", model="net", layers=layers, rotations={})
            t0 = time.perf_counter()
            html = write_report(run)
            times["write"].append(time.perf_counter() - t0)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t0 = time.perf_counter()
            page.goto(html.as_uri())
            page.wait_for_selector("html[data-ready]", state="attached", timeout=120_000)
            assert page.locator(".card").count() == 4 * n
            times["open"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for text in ("cat", "features.3 #249", ""):
                page.fill("#filter", text)
                page.locator(".card:not([hidden])").count()
            times["filter"].append((time.perf_counter() - t0) / 3)
            page.close()
        browser.close()
    print(f"report of {4 * n} cards, median of {args.repeats}:")
    for name, values in times.items():
        print(f"  {name:7s} {statistics.median(values):6.2f} s")


if __name__ == "__main__":
    main()
