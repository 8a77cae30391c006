"""Dashboard benchmarks in Debian's chromium (Playwright) against a real ``fulmen server`` process.

(The runs table with 10,000 runs: ``bench_runtable.py``.)

A chart of 100 runs x 1M steps of one metric (the server benchmark's database, built directly
through the store and cached in benchmarks/results/): time from asking the page for the chart
to the canvas being drawn with 100 series (fetch of the buckets + JSON + draw; target <= 1 s),
and a full page load with ``?charted=100`` until the chart is drawn.

    python benchmarks/bench_dashboard.py [--repeats N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.bench_server import _build_big, _free_port
from benchmarks.harness import RESULTS_DIR, Case, compare

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class Server:
    def __init__(self, data: Path, db: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(self.port)]
        self.proc = subprocess.Popen([*cmd, "--data", str(data), "--db", f"sqlite:///{db}"])
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def chart_cases(page: Any, url: str, runs: int, steps: int) -> list[Case]:
    def in_page() -> float:
        if "/bench/big" not in page.url:
            page.goto(url + "/bench/big")
            page.wait_for_selector('.panel[data-key="loss"][data-series]')
        seconds = page.evaluate(
            """async (n) => {
                const d = window.fulmenDashboard;
                const t0 = performance.now();
                await d.panels.setRuns(d.state.runs.slice(0, n));
                const c = document.querySelector('.panel[data-key="loss"] canvas').fulmen;
                if (c.series.length !== n) throw new Error(`${c.series.length} series`);
                return (performance.now() - t0) / 1000;
            }""",
            runs,
        )
        return float(seconds)

    def page_load() -> float:
        start = time.perf_counter()
        page.goto(f"{url}/bench/big?charted={runs}", wait_until="commit")
        page.wait_for_selector(f'.panel[data-key="loss"][data-series="{runs}"]')
        return time.perf_counter() - start

    return [
        Case(f"chart {runs} runs x {steps:,} steps: fetch + draw", in_page),
        Case("same, whole page load with ?charted=N", page_load),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    big_runs, big_steps = (5, 20_000) if args.quick else (100, 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="fulmen-bench-dash-"))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    big = RESULTS_DIR / f"bench_server_v3_{big_runs}x{big_steps}.db"  # shared with bench_server
    if not big.exists():
        started = time.perf_counter()
        _build_big(big, big_runs, big_steps)
        print(f"(built {big.name} in {time.perf_counter() - started:.0f} s)", flush=True)
    report: dict[str, object] = {}
    servers = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            chart = Server(work / "big-data", big)
            servers.append(chart)
            for case in chart_cases(page, chart.url, big_runs, big_steps):
                result = compare(case.name, [case], baseline=case.name, repeats=args.repeats)
                print(result.to_table(), flush=True)
                report[case.name] = result.results[0].median
            browser.close()
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for name, value in report.items():
        print(f"=> {name}: {float(value or 'nan') * 1000:.0f} ms")
    out = RESULTS_DIR / ("bench_dashboard_quick.json" if args.quick else "bench_dashboard.json")
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
