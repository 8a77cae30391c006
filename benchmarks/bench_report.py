"""An exported report in Debian's chromium (Playwright): 20 runs x 4 line panels, 10,000 points
per series, built through the store and served by a real ``fulmen server`` process.

Measured: the size of the exported HTML file (``GET .../reports/{id}/export.html``; target <=
5 MB) and the time from navigation to every panel drawn with its 20 runs when the file is opened
from ``file://`` with every network request refused (target <= 1 s), against the same report's
page on the server (its data fetched live) in the same run.

    python benchmarks/bench_report.py [--repeats N] [--runs 20] [--points 10000]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS_DIR, Case, compare

CHROMIUM = "/usr/bin/chromium"
KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def build(data: Path, runs: int, points: int) -> None:
    """``runs`` runs of project ``rep`` (config: optimizer, seed) with the ``KEYS`` metrics,
    ``points`` rows each, written through the store."""
    import numpy as np

    from fulmen.server._sqlite import SqliteStore
    from fulmen.track import runlog as rl

    store = SqliteStore(data / "fulmen.db")
    rng = np.random.default_rng(0)
    ords = np.arange(points, dtype=np.float64)
    for r in range(runs):
        meta = {"id": f"r{r:02d}", "name": f"run-{r:02d}", "project": "rep", "time": 1.7e9 + r}
        config = {"optimizer": "adam" if r % 2 else "sgd", "seed": r // 2}
        body = rl.frame(rl.RUN, rl.json_payload(1, meta))
        body += rl.frame(rl.CONFIG, rl.json_payload(2, config))
        store.ingest("local", "rep", f"r{r:02d}", body)
        for k, key in enumerate(KEYS):
            values = np.cumsum(rng.standard_normal(points)) * 0.01 + k
            stacked = np.stack([ords, ords, ords * 0.01, 1.7e9 + ords * 0.01, values])
            store.load_series("local", "rep", f"r{r:02d}", key, stacked)
    store.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "server", "--port", str(port), "--data", str(data)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/api/v1/health", timeout=1).close()
            return server, url
        except OSError:
            if time.time() > deadline:
                server.kill()
                raise
            time.sleep(0.2)


def make_report(url: str) -> dict[str, Any]:
    """A report of one grid: a line panel per key over every run (live)."""
    body = {
        "title": "bench",
        "blocks": [
            {"kind": "markdown", "text": "# 20 runs x 4 panels"},
            {
                "kind": "panels",
                "runsets": [{"name": "all"}],
                "panels": [{"kind": "line", "y": [k], "title": k} for k in KEYS],
            },
        ],
    }
    req = urllib.request.Request(
        url + "/api/v1/entities/local/projects/rep/reports",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        report: dict[str, Any] = json.loads(r.read())
    return report


def measure(path: Path, page_url: str, runs: int, repeats: int, note: str) -> Any:
    """Navigation to every panel drawn: the file from file:// (no network) and the page."""
    from playwright.sync_api import sync_playwright

    ready = f"""() => {{
        const ps = [...document.querySelectorAll('.fp-panel[data-kind="line"]')];
        return document.body.dataset.ready === "1" && ps.length === {len(KEYS)}
            && ps.every(p => p.dataset.series === "{runs}") && performance.now();
    }}"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        offline = browser.new_context(viewport={"width": 1400, "height": 1000})
        asked: list[str] = []

        def refuse(route: Any) -> None:
            asked.append(route.request.url)
            route.abort()

        offline.route(re.compile(r"^(?!file:|data:|blob:).*"), refuse)
        file_page = offline.new_page()
        live_page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()

        def opened(page: Any, target: str) -> float:
            page.goto(target, wait_until="commit")
            at = page.wait_for_function(ready, polling="raf", timeout=120_000).json_value()
            return float(at) / 1e3

        cases = [
            Case("export from file://, no network", lambda: opened(file_page, path.as_uri()), note),
            Case("the report page on the server", lambda: opened(live_page, page_url),
                 "its data fetched from the API"),
        ]  # fmt: skip
        result = compare(
            "open a report: navigation to every panel drawn",
            cases,
            baseline=cases[1].name,
            repeats=repeats,
            unit="ms",
            scale=1e3,
        )
        assert asked == [], asked
        browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=10_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fulmen-bench-report-"))
    data = work / "data"
    data.mkdir()
    build(data, args.runs, args.points)
    server, url = start_server(data)
    try:
        report = make_report(url)
        started = time.perf_counter()
        export = f"{url}/api/v1/entities/local/projects/rep/reports/{report['id']}/export.html"
        with urllib.request.urlopen(export, timeout=300) as r:
            html = r.read()
        export_s = time.perf_counter() - started
        path = work / "report.html"
        path.write_bytes(html)
        size = f"{len(html) / 1e6:.2f} MB"
        print(f"exported file: {size} ({len(html)} bytes; target <= 5 MB), built in "
              f"{export_s:.2f} s", flush=True)  # fmt: skip
        note = f"{size}, {args.runs} runs x {len(KEYS)} panels"
        result = measure(path, url + report["url"], args.runs, args.repeats, note)
        print(result.to_table(), flush=True)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = {
            "bytes": len(html),
            "export_build_s": export_s,
            "runs": args.runs,
            "panels": len(KEYS),
            "points": args.points,
            **{r.name: r.median for r in result.results},
        }
        (RESULTS_DIR / "bench_report.json").write_text(json.dumps(out, indent=2))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
