"""Server benchmarks against the issue's targets (figures: see docs/server.md and the report).

1. Sync throughput: an offline run of 50,000 rows x 20 scalars (1M points) written by
   ``fulmen.track``, uploaded by ``fulmen sync``'s code to a real ``fulmen server`` process on
   loopback. Target: >= 1M scalar points/s.
2. Chart query: 100 runs x 1M steps of one metric, 1,000 buckets, through the store (server time,
   JSON included). Target: <= 100 ms. The database is built directly through the store (the same
   write path as ingest, minus decoding) and cached in benchmarks/results/.
3. Runs query: 10,000 runs with 20 config and 20 summary values, one filter and a sort by a summary
   value, first page of 50. Target: <= 100 ms.

    python benchmarks/bench_server.py [--repeats N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson

from benchmarks.harness import RESULTS_DIR, Case, compare

ROWS, KEYS = 50_000, 20
RUNS_BIG, STEPS_BIG = 100, 1_000_000
RUNS_TABLE = 10_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _offline_run(folder: Path, rows: int) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_"))}
    env.update(FULMEN_DIR=str(folder), FULMEN_MODE="offline", FULMEN_CONSOLE="off")
    env.update(FULMEN_STATS_INTERVAL="0", FULMEN_DISABLE_GIT="true")
    env["FULMEN_SETTINGS_FILE"] = str(folder / "settings")
    code = (
        "import fulmen.track as t\n"
        "r = t.init(project='bench', id='sync1')\n"
        f"for i in range({rows}):\n"
        f"    r.log({{f'k{{j}}': i * 0.5 + j for j in range({KEYS})}})\n"
        "r.finish()\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return next((folder / "fulmen").glob("run-*-sync1"))


def sync_case(work: Path, rows: int) -> tuple[Case, subprocess.Popen[bytes]]:
    from fulmen.track._upload import Client, RunUpload

    run_dir = _offline_run(work / "client", rows)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fulmen",
            "server",
            "--port",
            str(port),
            "--data",
            str(work / "srv"),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/api/v1/health", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    counter = iter(range(10_000))

    def run() -> float:
        upload = RunUpload(run_dir, Client(url), entity=f"bench{next(counter)}")
        start = time.perf_counter()
        upload.drain()
        elapsed = time.perf_counter() - start
        assert upload.done
        return elapsed

    return Case(f"sync {rows * KEYS:,} points", run), server


def _build_big(path: Path, runs: int, steps: int) -> None:
    from fulmen.server._sqlite import SqliteStore

    store = SqliteStore(path)
    rng = np.random.default_rng(0)
    for r in range(runs):
        ords = np.arange(steps, dtype=np.float64)
        values = np.cumsum(rng.standard_normal(steps))
        points = np.stack([ords, ords, ords * 0.01, 1.7e9 + ords * 0.01, values])
        store.load_series("bench", "big", f"r{r}", "loss", points)
    store.close()


def history_case(work: Path, runs: int, steps: int) -> Case:
    from fulmen.server._sqlite import SqliteStore
    from fulmen.server.store import HistoryQuery

    cached = RESULTS_DIR / f"bench_server_v3_{runs}x{steps}.db"  # v3: overview of full pieces
    if not cached.exists():
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        _build_big(cached, runs, steps)
        print(f"(built {cached.name} in {time.perf_counter() - started:.0f} s)", flush=True)
    store = SqliteStore(cached)
    query = HistoryQuery(runs=tuple(f"r{r}" for r in range(runs)), keys=("loss",), buckets=1000)

    def run() -> float:
        start = time.perf_counter()
        series = store.history("bench", "big", query)
        orjson.dumps({"series": series}, option=orjson.OPT_SERIALIZE_NUMPY)  # as the API answers
        elapsed = time.perf_counter() - start
        assert len(series) == runs
        assert sum(series[0]["count"]) == steps
        return elapsed

    return Case(f"history {runs} runs x {steps:,} steps, 1000 buckets", run)


def history_http_case(runs: int, steps: int) -> Case:
    """The same query through the HTTP app in-process (routing, validation, orjson)."""
    from fastapi.testclient import TestClient

    from fulmen.server.app import ServerConfig, create_app

    cached = RESULTS_DIR / f"bench_server_v3_{runs}x{steps}.db"
    client = TestClient(create_app(ServerConfig(data=cached.parent, db=f"sqlite:///{cached}")))
    client.__enter__()  # one event loop and worker threads for every request, as in a server
    params = {"run": [f"r{r}" for r in range(runs)], "key": "loss", "buckets": 1000}

    def run() -> float:
        start = time.perf_counter()
        response = client.get("/api/v1/entities/bench/projects/big/history", params=params)
        elapsed = time.perf_counter() - start
        assert response.status_code == 200
        return elapsed

    return Case(f"same, GET /history in-process ({runs} runs)", run)


def runs_case(work: Path, runs: int) -> Case:
    from fulmen.server._sqlite import SqliteStore
    from fulmen.server.store import Filter, RunQuery
    from fulmen.track import runlog as rl

    store = SqliteStore(work / "runs.db")
    for r in range(runs):
        config = {f"c{j}": (r * 7 + j) % 1000 / 1000 for j in range(20)}
        summary = {f"s{j}": (r * 13 + j) % 997 / 997 for j in range(20)}
        body = rl.frame(rl.RUN, rl.json_payload(1, {"id": f"r{r}", "project": "t"}))
        body += rl.frame(rl.CONFIG, rl.json_payload(2, config))
        body += rl.frame(rl.SUMMARY, rl.json_payload(3, {"update": summary}))
        store.ingest("bench", "table", f"r{r}", body)
    query = RunQuery(filters=(Filter("config.c3", ">", 0.5),), sort="-summary.s5", limit=50)

    def run() -> float:
        start = time.perf_counter()
        page = store.runs("bench", "table", query)
        json.dumps(page.runs)
        elapsed = time.perf_counter() - start
        assert len(page.runs) == 50
        return elapsed

    return Case(f"runs query over {runs:,} runs, filter + sort", run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    rows = 2_000 if args.quick else ROWS
    runs_big, steps_big = (3, 20_000) if args.quick else (RUNS_BIG, STEPS_BIG)
    runs_table = 200 if args.quick else RUNS_TABLE
    work = Path(tempfile.mkdtemp(prefix="fulmen-bench-server-"))
    report: dict[str, object] = {}
    server = None
    try:
        case, server = sync_case(work, rows)
        sync = compare("sync throughput", [case], baseline=case.name, repeats=args.repeats)
        median = sync.results[0].median or float("nan")
        print(sync.to_table())
        print(f"\n=> {rows * KEYS / median:,.0f} scalar points/s (target >= 1,000,000)\n")
        report["sync_points_per_s"] = rows * KEYS / median
        for case, target, key in [
            (history_case(work, runs_big, steps_big), 0.1, "history_s"),
            (history_http_case(runs_big, steps_big), 0.1, "history_http_s"),
            (runs_case(work, runs_table), 0.1, "runs_query_s"),
        ]:
            result = compare(case.name, [case], baseline=case.name, repeats=args.repeats)
            print(result.to_table())
            value = result.results[0].median or float("nan")
            print(f"\n=> {value * 1000:.1f} ms (target <= {target * 1000:.0f} ms)\n")
            report[key] = value
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_server.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
