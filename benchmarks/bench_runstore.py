"""The runs table's store calls alone, on both engines: ``Store.columns`` (every key and leaf
path of a project's runs, what the column picker lists) and a page of 100 runs at offset 5,000,
sorted by a summary value, in a project of 10,000 runs; each against the same call on a project
of 100 runs in the same store, in the same run (20 config values, two of them nested in ``model``,
and 20 summary values per run, as in ``bench_runtable``).

- ``columns, first``: the call after a run of the project changed (one more batch of records
  to a run; the kept answer no longer holds, so the store reads every run again);
- ``columns, kept``: the call again, nothing changed since (the answer kept by the store);
- ``runs page``: ``Store.runs`` with ``sort=-summary.s3``, ``limit=100``, ``offset=5,000``
  (offset 50 in the small project).

The SQLite store is a file in a temporary folder; PostgreSQL a throwaway cluster
(``tests/server/postgres.py``, fsync off), skipped where PostgreSQL is not installed.

    PYTHONPATH=src python -m benchmarks.bench_runstore [--runs N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS_DIR, Case, compare, ingest_runs

BASE = 100


def _touch(store: Any, project: str) -> None:
    """One more record to run r0: the project changed."""
    from fulmen.track import runlog as rl

    seq = store.held("bench", project, "r0") + 1
    body = rl.frame(rl.SUMMARY, rl.json_payload(seq, {"update": {"touched": seq}}))
    store.ingest("bench", project, "r0", body)


def _timed(call: Callable[[], Any], before: Callable[[], Any] | None = None) -> Callable[[], float]:
    def run() -> float:
        if before is not None:
            before()
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    return run


def cases(engine: str, store: Any, runs: int) -> list[Case]:
    from fulmen.server.store import RunQuery

    out = []
    for project, n in (("base", BASE), ("big", runs)):
        label = f"{engine}, {n:,} runs"
        page = RunQuery(sort="-summary.s3", limit=100, offset=n // 2)
        base = f"{engine}, {BASE:,} runs"
        out += [
            Case(
                f"columns, first: {label}",
                _timed(
                    lambda p=project: store.columns("bench", p), lambda p=project: _touch(store, p)
                ),
                baseline=f"columns, first: {base}",
            ),
            Case(
                f"columns, kept: {label}",
                _timed(lambda p=project: store.columns("bench", p)),
                baseline=f"columns, kept: {base}",
            ),
            Case(
                f"runs page at {n // 2:,}: {label}",
                _timed(lambda p=project, q=page: store.runs("bench", p, q)),
                baseline=f"runs page at {BASE // 2:,}: {base}",
            ),
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs of the big project")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "bench_runstore.json")
    args = parser.parse_args()
    from fulmen.server._sqlite import SqliteStore

    work = Path(tempfile.mkdtemp(prefix="bench-runstore-"))
    stores: dict[str, Any] = {}
    made: Any = None
    try:
        for engine in args.engines.split(","):
            started = time.perf_counter()
            if engine == "sqlite":
                stores[engine] = SqliteStore(work / "runs.db")
            else:
                from tests.server.postgres import Cluster, binaries

                folder = binaries()
                if folder is None:
                    print("(PostgreSQL is not installed: sqlite only)", file=sys.stderr)
                    continue
                from fulmen.server._postgres import PostgresStore

                made = Cluster(folder)
                stores[engine] = PostgresStore(made.create_database())
            ingest_runs(stores[engine], "base", BASE, nested=True)
            ingest_runs(stores[engine], "big", args.runs, nested=True)
            print(f"({engine}: built in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
        all_cases = [c for engine, store in stores.items() for c in cases(engine, store, args.runs)]
        result = compare(
            "runs table store calls",
            all_cases,
            baseline=all_cases[0].name,
            repeats=args.repeats,
            unit="ms",
            scale=1e3,
        )
        print(result.to_table(), flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        print(f"(written to {args.json})", file=sys.stderr)
    finally:
        for store in stores.values():
            store.close()
        if made is not None:
            made.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
