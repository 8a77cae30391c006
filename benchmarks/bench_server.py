"""Server benchmarks against the issue's targets, SQLite and PostgreSQL side by side in one run
(figures: see docs/server.md and the report).

1. Sync throughput: an offline run of 50,000 rows x 20 scalars (1M points) written by
   ``fulmen.track``, uploaded by ``fulmen sync``'s code to a real ``fulmen server`` process on
   loopback, on each engine. Target: >= 1M scalar points/s on each.
2. Chart query: 100 runs x 1M steps of one metric, 1,000 buckets, through the store (server time,
   JSON included), and through ``GET /history`` on the in-process app, on each engine. Target:
   <= 100 ms. The databases are built directly through
   the store (the same write path as ingest, minus decoding) and kept in benchmarks/results/ (the
   SQLite file, and the PostgreSQL cluster's folder), so later runs skip the build.
3. Runs query: 10,000 runs with 20 config and 20 summary values, one filter and a sort by a summary
   value, first page of 50, on each engine. Target: <= 100 ms.
4. Ingest scaling on PostgreSQL: 8 runs of 10,000 rows x 20 scalars uploaded at once by 8 client
   processes spread over 1, 2 and 4 ``fulmen server`` processes on one database; aggregate
   points/s, each divided by the 1-process figure.

PostgreSQL is a throwaway cluster of this machine's binaries (``initdb``, as the tests start one:
tests/server/postgres.py) with the settings of a test machine (fsync off); the figures compare the
engines' code paths, not a production database's disks.

    python benchmarks/bench_server.py [--repeats N] [--quick] [--no-scaling] [--only PART,...]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.harness import RESULTS_DIR, Case, compare, ingest_runs

ROWS, KEYS = 50_000, 20
RUNS_BIG, STEPS_BIG = 100, 1_000_000
RUNS_TABLE = 10_000
SCALE_CLIENTS, SCALE_ROWS = 8, 10_000
ENGINES = ("sqlite", "postgresql")
PARTS = ("sync", "queries", "scaling")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _offline_run(folder: Path, rows: int, run_id: str = "sync1") -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_"))}
    env.update(FULMEN_DIR=str(folder), FULMEN_MODE="offline", FULMEN_CONSOLE="off")
    env.update(FULMEN_STATS_INTERVAL="0", FULMEN_DISABLE_GIT="true")
    env["FULMEN_SETTINGS_FILE"] = str(folder / "settings")
    code = (
        "import fulmen.track as t\n"
        f"r = t.init(project='bench', id='{run_id}')\n"
        f"for i in range({rows}):\n"
        f"    r.log({{f'k{{j}}': i * 0.5 + j for j in range({KEYS})}})\n"
        "r.finish()\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return next((folder / "fulmen").glob(f"run-*-{run_id}"))


class Servers:
    """``fulmen server`` processes on one database (``--database``), each on its own port."""

    def __init__(self, data: Path, database: str | None, count: int = 1) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        for _ in range(count):
            port = _free_port()
            cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(port), "--data",
                   str(data)] + (["--database", database] if database else [])  # fmt: skip
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
            self.urls.append(f"http://127.0.0.1:{port}")
        for url in self.urls:
            for _ in range(600):
                try:
                    with urllib.request.urlopen(url + "/api/v1/health", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


def sync_case(engine: str, run_dir: Path, servers: Servers, rows: int) -> Case:
    from fulmen.track._upload import Client, RunUpload

    counter = iter(range(10_000))

    def run() -> float:
        upload = RunUpload(run_dir, Client(servers.urls[0]), entity=f"bench{next(counter)}")
        start = time.perf_counter()
        upload.drain()
        elapsed = time.perf_counter() - start
        assert upload.done
        return elapsed

    return Case(f"sync {rows * KEYS:,} points, {engine}", run)


def _build_big(path: Path, runs: int, steps: int) -> None:
    """The chart database as a SQLite file at ``path`` (bench_dashboard's too)."""
    from fulmen.server._sqlite import SqliteStore

    store = SqliteStore(path)
    _fill_big(store, runs, steps)
    store.close()


def _fill_big(store: Any, runs: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    for r in range(runs):
        ords = np.arange(steps, dtype=np.float64)
        values = np.cumsum(rng.standard_normal(steps))
        points = np.stack([ords, ords, ords * 0.01, 1.7e9 + ords * 0.01, values])
        store.load_series("bench", "big", f"r{r}", "loss", points)


def history_case(engine: str, store: Any, runs: int, steps: int) -> Case:
    from fulmen.server.store import HistoryQuery

    query = HistoryQuery(runs=tuple(f"r{r}" for r in range(runs)), keys=("loss",), buckets=1000)

    def run() -> float:
        start = time.perf_counter()
        series = store.history("bench", "big", query)
        orjson.dumps({"series": series}, option=orjson.OPT_SERIALIZE_NUMPY)  # as the API answers
        elapsed = time.perf_counter() - start
        assert len(series) == runs
        assert sum(series[0]["count"]) == steps
        return elapsed

    return Case(f"history {runs} runs x {steps:,} steps, 1000 buckets, {engine}", run)


def history_http_case(engine: str, data: Path, db: str, runs: int) -> Case:
    """The same query through the HTTP app in-process (routing, validation, orjson)."""
    from fastapi.testclient import TestClient

    from fulmen.server.app import ServerConfig, create_app

    client = TestClient(create_app(ServerConfig(data=data, db=db)))
    client.__enter__()  # one event loop and worker threads for every request, as in a server
    params = {"run": [f"r{r}" for r in range(runs)], "key": "loss", "buckets": 1000}

    def run() -> float:
        start = time.perf_counter()
        response = client.get("/api/v1/entities/bench/projects/big/history", params=params)
        elapsed = time.perf_counter() - start
        assert response.status_code == 200
        return elapsed

    return Case(f"same, GET /history in-process, {engine}", run)


def runs_case(engine: str, store: Any, runs: int) -> Case:
    from fulmen.server.store import Filter, RunQuery

    query = RunQuery(filters=(Filter("config.c3", ">", 0.5),), sort="-summary.s5", limit=50)

    def run() -> float:
        start = time.perf_counter()
        page = store.runs("bench", "table", query)
        json.dumps(page.runs)
        elapsed = time.perf_counter() - start
        assert len(page.runs) == 50
        return elapsed

    return Case(f"runs query over {runs:,} runs, filter + sort, {engine}", run)


UPLOADER = """
import sys, time
from pathlib import Path
from fulmen.track._upload import Client, RunUpload
run_dir, url, entity = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
upload = RunUpload(run_dir, Client(url), entity=entity)
ready = Path(sys.argv[4])
while not ready.exists():
    time.sleep(0.001)
upload.drain()
assert upload.done
"""


def scaling(
    work: Path, cluster: Any, processes: tuple[int, ...], clients: int, rows: int
) -> dict[int, float]:
    """Aggregate points/s of ``clients`` uploads at once over N server processes."""
    runs = [_offline_run(work / f"scale-client{i}", rows, f"scale{i}") for i in range(clients)]
    out: dict[int, float] = {}
    for n in processes:
        url = cluster.create_database()
        servers = Servers(work / f"scale-data{n}", url, n)
        best = float("inf")
        try:
            for attempt in range(2):  # the better of two: the first warms the database up
                go = work / f"go-{n}-{attempt}"
                procs = [
                    subprocess.Popen([sys.executable, "-c", UPLOADER, str(run),
                                      servers.urls[i % n], f"s{n}x{attempt}", str(go)])
                    for i, run in enumerate(runs)
                ]  # fmt: skip
                time.sleep(3.0)  # every client imported and waiting
                start = time.perf_counter()
                go.touch()
                for proc in procs:
                    assert proc.wait(600) == 0
                best = min(best, time.perf_counter() - start)
        finally:
            servers.stop()
        out[n] = clients * rows * KEYS / best
        print(f"  {n} server process(es): {out[n]:,.0f} points/s", flush=True)
    return out


def _drop_scratch(cluster: Any) -> None:
    """Drop the cluster's scratch databases (``t0``, ``t1``, ...: all but the big one)."""
    import psycopg

    with psycopg.connect(cluster.url(), autocommit=True) as con:
        names = [
            r[0] for r in con.execute("SELECT datname FROM pg_database WHERE datname ~ '^t[0-9]+$'")
        ]
    for name in names:
        cluster.admin(f'DROP DATABASE "{name}" WITH (FORCE)')


def part_sync(work: Path, cluster: Any, rows: int, repeats: int, stop: list[Any]) -> dict[str, Any]:
    run_dir = _offline_run(work / "client", rows)
    cases = []
    for engine in ENGINES:
        url = None if engine == "sqlite" else cluster.create_database()
        servers = Servers(work / f"srv-{engine}", url)
        stop.append(servers.stop)
        cases.append(sync_case(engine, run_dir, servers, rows))
    sync = compare("sync throughput", cases, baseline=cases[0].name, repeats=repeats)
    print(sync.to_table())
    report = {}
    for engine, result in zip(ENGINES, sync.results, strict=True):
        points = rows * KEYS / (result.median or float("nan"))
        print(f"=> {engine}: {points:,.0f} scalar points/s (target >= 1,000,000)")
        report[f"sync_points_per_s_{engine}"] = points
    print()
    return report


def _big_stores(
    work: Path, cluster: Any, runs: int, steps: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """The chart query's stores, built once and kept in results/ (minutes to build)."""
    from fulmen.server._postgres import PostgresStore
    from fulmen.server._sqlite import SqliteStore
    from fulmen.server.store import HistoryQuery

    name = f"bench_server_v4_{runs}x{steps}"  # v4: overview level 4; bench_dashboard reads it too
    big: dict[str, Any] = {}
    sqlite_path = RESULTS_DIR / f"{name}.db"
    if not sqlite_path.exists():
        started = time.perf_counter()
        _build_big(work / "building.db", runs, steps)
        shutil.move(work / "building.db", sqlite_path)
        print(f"(built {sqlite_path.name} in {time.perf_counter() - started:.0f} s)")
    big["sqlite"] = SqliteStore(sqlite_path)
    url = cluster.url(name)
    try:
        big["postgresql"] = PostgresStore(url)
        last = HistoryQuery((f"r{runs - 1}",), ("loss",))
        big["postgresql"].history("bench", "big", last)  # the last run built: all there
    except Exception:  # not built yet (or a build was cut short): build it
        if "postgresql" in big:
            big.pop("postgresql").close()
        cluster.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cluster.admin(f'CREATE DATABASE "{name}"')
        started = time.perf_counter()
        big["postgresql"] = PostgresStore(url)
        _fill_big(big["postgresql"], runs, steps)
        print(f"(built the PostgreSQL {name} in {time.perf_counter() - started:.0f} s)")
    return big, {"sqlite": f"sqlite:///{sqlite_path}", "postgresql": url}


def part_queries(
    work: Path, cluster: Any, big_size: tuple[int, int], runs_table: int, repeats: int
) -> dict[str, Any]:
    from fulmen.server._postgres import PostgresStore
    from fulmen.server._sqlite import SqliteStore

    report = {}
    runs_big, steps_big = big_size
    big, urls = _big_stores(work, cluster, runs_big, steps_big)
    table = {
        "sqlite": SqliteStore(work / "runs.db"),
        "postgresql": PostgresStore(cluster.create_database()),
    }
    for store in table.values():
        ingest_runs(store, "table", runs_table)
    for what, cases in (
        ("history", [history_case(e, big[e], runs_big, steps_big) for e in ENGINES]),
        ("history_http", [history_http_case(e, work, urls[e], runs_big) for e in ENGINES]),
        ("runs_query", [runs_case(e, table[e], runs_table) for e in ENGINES]),
    ):
        result = compare(what, cases, baseline=cases[0].name, repeats=repeats)
        print(result.to_table())
        for engine, r in zip(ENGINES, result.results, strict=True):
            print(f"=> {engine}: {(r.median or 0) * 1000:.1f} ms (target <= 100 ms)")
            report[f"{what}_s_{engine}"] = r.median
        print()
    for store in (*big.values(), *table.values()):
        store.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling part")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"the parts to run, comma-separated, of {', '.join(PARTS)} (default: all)",
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--only: {args.only!r} names a part not in {', '.join(PARTS)}")
    if args.no_scaling:
        parts.discard("scaling")
    from tests.server.postgres import Cluster, require_postgres

    rows = 2_000 if args.quick else ROWS
    big_size = (3, 20_000) if args.quick else (RUNS_BIG, STEPS_BIG)
    runs_table = 200 if args.quick else RUNS_TABLE
    work = Path(tempfile.mkdtemp(prefix="fulmen-bench-server-"))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    # the cluster is kept in results/ with the big database in it
    cluster = Cluster(require_postgres(), RESULTS_DIR / "bench_server_pg")
    _drop_scratch(cluster)  # what a run cut short left
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    stop: list[Callable[[], None]] = [cluster.stop, lambda: _drop_scratch(cluster)]
    try:
        if "sync" in parts:
            report.update(part_sync(work, cluster, rows, args.repeats, stop))
        if "queries" in parts:
            report.update(part_queries(work, cluster, big_size, runs_table, args.repeats))
        if "scaling" in parts:
            clients, scale_rows = (4, 1_000) if args.quick else (SCALE_CLIENTS, SCALE_ROWS)
            print(f"ingest scaling: {clients} clients x {scale_rows * KEYS:,} points, PostgreSQL")
            scaled = scaling(work, cluster, (1, 2, 4), clients, scale_rows)
            for n, points in scaled.items():
                ratio = points / scaled[1]
                print(f"=> {n} process(es): {points:,.0f} points/s ({ratio:.2f}x one process)")
            report["scaling_points_per_s"] = scaled
    finally:
        for step in reversed(stop):
            try:
                step()
            except Exception as exc:  # the rest still stop
                print(f"(stopping: {exc})", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    (RESULTS_DIR / "bench_server.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
