"""The runs table (``static/runtable.js``) in Debian's chromium (Playwright) against a real
``fulmen server``: a project of 10,000 runs against a baseline project of 100 runs, in the same
run and the same server (20 config and 20 summary values per run; the table shows 4 summary and 3
config columns, as the project page chooses them).

- first rows: navigation start to the frame that shows the table's first rows, measured by the
  page (``performance.now()`` at the first rows drawn, then one animation frame: they are on
  screen), and the same seen from outside by Playwright;
- scroll frame: the mean time of one animation frame while the table scrolls by 3 rows a frame
  through 120 frames (the rows are virtualized: only those in view exist), from the middle of
  the table, turning back at either end;
- jump: a jump of the scroll position to a random place, until the rows there hold their runs
  (with 10,000 runs that includes fetching a block of 100 rows from the server; with 100 they
  are all loaded already), the mean of 20 jumps.

    python benchmarks/bench_runtable.py [--repeats N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_dashboard import ARGS, CHROMIUM, Server
from benchmarks.harness import RESULTS_DIR, Case, compare, ingest_runs

BASE = 100


def _build(path: Path, projects: dict[str, int]) -> None:
    from fulmen.server._sqlite import SqliteStore

    store = SqliteStore(path)
    for project, runs in projects.items():
        ingest_runs(store, project, runs)
    store.close()


_READY = "#runs-table[data-painted] .rt-body .rt-row[data-run] a"


def cases(page: Any, url: str, project: str, runs: int, baseline: str | None) -> list[Case]:
    label = f"{runs:,} runs"

    def first_rows() -> float:
        page.goto(f"{url}/bench/{project}", wait_until="commit")
        page.wait_for_selector(_READY)
        assert page.get_attribute("#runs-table", "data-total") == str(runs)
        seconds = page.evaluate(
            """() => new Promise(r => requestAnimationFrame(() => r(
                window.fulmenDashboard.table.timing.firstRows / 1000)))"""
        )
        return float(seconds)

    def first_rows_seen() -> float:
        start = time.perf_counter()
        page.goto(f"{url}/bench/{project}", wait_until="commit")
        page.wait_for_selector(_READY, state="visible")
        return time.perf_counter() - start

    def ready() -> None:
        if not page.url.endswith(f"/bench/{project}"):
            page.goto(f"{url}/bench/{project}")
            page.wait_for_selector(_READY)

    def scroll_frame() -> float:
        ready()
        seconds = page.evaluate(
            """async () => {
                const s = document.querySelector("#runs-table .rt-scroll");
                const frame = () => new Promise(r => requestAnimationFrame(r));
                s.scrollTop = s.scrollHeight / 2;
                for (let i = 0; i < 20; i++) await frame(); // the rows there, loaded
                const t0 = performance.now();
                let dir = 1; // back and forth: 100 rows end before 120 frames do
                for (let i = 0; i < 120; i++) {
                    const max = s.scrollHeight - s.clientHeight;
                    if (s.scrollTop + dir * 78 > max || s.scrollTop + dir * 78 < 0) dir = -dir;
                    s.scrollTop += dir * 78;
                    await frame();
                }
                return (performance.now() - t0) / 120 / 1000;
            }"""
        )
        return float(seconds)

    def jump() -> float:
        ready()
        seconds = page.evaluate(
            """async () => {
                const s = document.querySelector("#runs-table .rt-scroll");
                const frame = () => new Promise(r => requestAnimationFrame(r));
                let seed = 7, total = 0;
                for (let i = 0; i < 20; i++) {
                    seed = (seed * 48271) % 2147483647;
                    const t0 = performance.now();
                    s.scrollTop = (s.scrollHeight - s.clientHeight) * (seed % 1000) / 999;
                    const top = Math.floor(Math.max(0, s.scrollTop - 30) / 26) + 2;
                    for (;;) {
                        await frame();
                        const row = s.querySelector(`.rt-row[data-index="${top}"]`);
                        if (row && row.dataset.run) break;
                    }
                    total += performance.now() - t0;
                }
                return total / 20 / 1000;
            }"""
        )
        return float(seconds)

    def base(name: str) -> str | None:
        return name if baseline is None else name.replace(label, baseline)

    names = [
        f"first rows on screen, {label}",
        f"first rows seen by Playwright, {label}",
        f"scroll: one frame, 3 rows a frame, {label}",
        f"scroll: jump until its rows are filled, {label}",
    ]
    runs_ = [first_rows, first_rows_seen, scroll_frame, jump]
    return [Case(n, f, baseline=base(n)) for n, f in zip(names, runs_, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1,000 runs instead of 10,000")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    big = 1_000 if args.quick else 10_000
    work = Path(tempfile.mkdtemp(prefix="fulmen-bench-runtable-"))
    started = time.perf_counter()
    _build(work / "t.db", {"base": BASE, "big": big})
    print(f"(built {BASE + big:,} runs in {time.perf_counter() - started:.0f} s)", flush=True)
    server = Server(work / "data", work / "t.db")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            small_page = browser.new_page(viewport={"width": 1400, "height": 1000})
            big_page = browser.new_page(viewport={"width": 1400, "height": 1000})
            baseline = cases(small_page, server.url, "base", BASE, None)
            label = f"{BASE:,} runs"
            contenders = cases(big_page, server.url, "big", big, label)
            result = compare(
                "runs table",
                [*baseline, *contenders],
                baseline=baseline[0].name,
                repeats=args.repeats,
                unit="ms",
                scale=1e3,
            )
            print(result.to_table(), flush=True)
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = RESULTS_DIR / ("bench_runtable_quick.json" if args.quick else "bench_runtable.json")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    print(f"(written to {out})", file=sys.stderr)


if __name__ == "__main__":
    main()
