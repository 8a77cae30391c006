"""Dashboard benchmarks in Debian's chromium (Playwright) against a real ``fulmen server`` process.

(The runs table with 10,000 runs: ``bench_runtable.py``.)

1. A chart of 100 runs x 1M steps of one metric (the server benchmark's database, built directly
   through the store and cached in benchmarks/results/): time from asking the page for the chart
   to the canvas being drawn with 100 series (fetch of the buckets + JSON + draw; target <= 1 s),
   and a full page load with ``?charted=100`` until the chart is drawn.
2. Panels: a project page of 100 runs x 6 line panels x 100,000 points per series (built through
   the store, cached in benchmarks/results/): first full paint (navigation to every panel drawn
   with its 100 runs; target <= 1 s) against the projects page (no panels) in the same run, and
   a cursor moved across the 6 synchronized panels once the page has loaded (the cursor of every
   panel, the legend and tooltip of the panel under it; the other legends follow when it rests):
   the script time per move and the frame interval while moving (target <= 16 ms), against one
   panel of one run.

    python benchmarks/bench_dashboard.py [--repeats N] [--quick] [--only chart,panels]
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
                d.panels.source.setRuns(d.state.runs.slice(0, n));
                await d.panels.grid.refresh();
                const c = document.querySelector('.fp-panel[data-key="loss"]').fulmen;
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


PANEL_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "grad_norm")


def _panels_db(path: Path, runs: int, points: int) -> None:
    """``runs`` runs with the ``PANEL_KEYS`` metrics, ``points`` rows each (six line panels in
    the default layout: sections train, val and charts)."""
    import numpy as np

    from fulmen.server._sqlite import SqliteStore

    store = SqliteStore(path)
    rng = np.random.default_rng(0)
    ords = np.arange(points, dtype=np.float64)
    for r in range(runs):
        for k, key in enumerate(PANEL_KEYS):
            values = np.cumsum(rng.standard_normal(points)) * 0.01 + k
            stacked = np.stack([ords, ords, ords * 0.01, 1.7e9 + ords * 0.01, values])
            store.load_series("bench", "panels", f"r{r:03d}", key, stacked)
    store.close()


def panel_cases(page: Any, url: str, runs: int, points: int) -> list[Case]:
    ready = f"""() => {{
        const ps = [...document.querySelectorAll('.fp-panel[data-kind="line"]')];
        return ps.length === {len(PANEL_KEYS)} && ps.every(p => p.dataset.series === "{runs}")
            && !ps.some(p => p.dataset.loading) && performance.now();
    }}"""

    def full_paint() -> float:
        # measured by the page: navigation start to the frame where the last panel is drawn
        page.goto(f"{url}/bench/panels?charted={runs}", wait_until="commit")
        at = page.wait_for_function(ready, polling="raf", timeout=120_000).json_value()
        first = page.evaluate("() => document.querySelector('.fp-panel').fulmen.points")
        assert first >= runs, first  # the lines are there
        return float(at) / 1000

    def no_panels_paint() -> float:
        page.goto(f"{url}/", wait_until="commit")
        at = page.wait_for_function(
            "() => document.querySelector('#projects a') && performance.now()", polling="raf"
        ).json_value()
        return float(at) / 1000

    move = """async ([moves, only]) => {
        const plot = document.querySelector('.fp-panel[data-kind="line"] .u-over');
        const box = plot.getBoundingClientRect();
        const frame = () => new Promise(r => requestAnimationFrame(r));
        plot.dispatchEvent(new MouseEvent("mouseenter", {clientX: box.left + 5,
                                                         clientY: box.top + 5}));
        await frame();
        let script = 0;
        const stamps = [];
        for (let i = 0; i < moves; i++) {
            const x = box.left + box.width * (0.05 + 0.9 * ((i * 37) % moves) / moves);
            const ev = new MouseEvent("mousemove", {clientX: x, clientY: box.top + box.height / 2,
                                                    bubbles: true});
            const t0 = performance.now();
            plot.dispatchEvent(ev);   // uPlot moves this cursor and, synchronously, the others
            script += performance.now() - t0;
            stamps.push(await frame());
        }
        const cursors = [...document.querySelectorAll('.fp-panel[data-kind="line"]')]
            .map(p => p.dataset.cursor);
        if (!only && new Set(cursors).size !== 1) throw new Error(`not synced: ${cursors}`);
        if (document.querySelector('.fp-tip').hidden) throw new Error("no tooltip shown");
        const gaps = stamps.slice(1).map((t, i) => t - stamps[i]);
        gaps.sort((a, b) => a - b);
        return {script: script / moves, frame: gaps[Math.floor(gaps.length / 2)]};
    }"""
    measured: dict[str, float] = {}

    def cursor(kind: str, single: bool) -> Any:
        def run() -> float:
            path = f"{url}/bench/panels?charted={runs}"
            if single:
                path = f"{url}/bench/panels/runs/r000"
            if page.url != path:
                page.goto(path)
                page.wait_for_function(
                    ready
                    if not single
                    else "() => document.querySelector('.fp-panel')?.dataset.series === '1'",
                    timeout=120_000,
                )
                # the cursor once the page has loaded (the media section is its last request):
                # not the 100 media requests of the charted runs competing with the frames
                page.wait_for_selector("#media[data-ready]", state="attached", timeout=120_000)
            got = page.evaluate(move, [60, single])
            measured[kind] = got["frame"]
            return float(got["script" if kind.startswith("script") else "frame"]) / 1000

        return run

    size = f"{runs} runs x {len(PANEL_KEYS)} panels x {points:,} points"
    return [
        Case(f"panels page, {size}: first full paint", full_paint, baseline="projects page"),
        Case("projects page", no_panels_paint, note="no panels: the baseline of a page load"),
        Case(f"cursor move over {len(PANEL_KEYS)} synced panels: script time",
             cursor("script", False), baseline="one run page: script time"),
        Case("one run page: script time", cursor("script1", True), note="the same move, 1 run"),
        Case(f"cursor move over {len(PANEL_KEYS)} synced panels: frame interval",
             cursor("frame", False), baseline="one run page: frame interval"),
        Case("one run page: frame interval", cursor("frame1", True)),
    ]  # fmt: skip


def _cached(path: Path, build: Any, *args: Any) -> Path:
    """``path``, built by ``build(path, *args)`` when it is not there yet."""
    if not path.exists():
        started = time.perf_counter()
        build(path, *args)
        print(f"(built {path.name} in {time.perf_counter() - started:.0f} s)", flush=True)
    return path


def _measure(groups: list[list[Case]], repeats: int, report: dict[str, object]) -> None:
    """Each group measured interleaved, compared with its last case (one case: with itself)."""
    for cases in groups:
        result = compare(cases[0].name, cases, baseline=cases[-1].name, repeats=repeats)
        print(result.to_table(), flush=True)
        for r in result.results:
            report[r.name] = r.median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default="chart,panels", help="which parts to run")
    args = parser.parse_args()
    only = set(args.only.split(","))
    from playwright.sync_api import sync_playwright

    big_runs, big_steps = (5, 20_000) if args.quick else (100, 1_000_000)
    panel_runs, panel_points = (10, 10_000) if args.quick else (100, 100_000)
    work = Path(tempfile.mkdtemp(prefix="fulmen-bench-dash-"))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    dbs: dict[str, Path] = {}
    if "panels" in only:
        name = f"bench_dashboard_panels_{panel_runs}x{panel_points}.db"
        dbs["panels"] = _cached(RESULTS_DIR / name, _panels_db, panel_runs, panel_points)
    if "chart" in only:  # shared with bench_server
        name = f"bench_server_v4_{big_runs}x{big_steps}.db"
        dbs["chart"] = _cached(RESULTS_DIR / name, _build_big, big_runs, big_steps)
    report: dict[str, object] = {}
    servers = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for part in ("chart", "panels"):
                if part not in only:
                    continue
                server = Server(work / f"{part}-data", dbs[part])
                servers.append(server)
                if part == "chart":
                    groups = [[c] for c in chart_cases(page, server.url, big_runs, big_steps)]
                else:  # each case with its baseline
                    cases = panel_cases(page, server.url, panel_runs, panel_points)
                    groups = [cases[0:2], cases[2:4], cases[4:6]]
                _measure(groups, args.repeats, report)
            browser.close()
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for name, value in report.items():
        print(f"=> {name}: {float(value or 'nan') * 1000:.1f} ms")
    out = RESULTS_DIR / ("bench_dashboard_quick.json" if args.quick else "bench_dashboard.json")
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
