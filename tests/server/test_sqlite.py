"""The SQLite engine (``fulmen.server._sqlite``): one writer with readers that cannot write, a full
disk, a huge row written in chunks with other writers going between them. What every engine does
is in test_sqlstore.py; migrations in test_migrations.py."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fulmen.server._sqlite import SqliteStore
from fulmen.server.app import ServerConfig, create_app
from tests.server.runlogs import CLIENT_HEADERS, LogWriter

RUNS = "/api/v1/entities/local/projects/proj/runs"


def post(client: TestClient, run_id: str, body: bytes) -> int:
    r = client.post(f"{RUNS}/{run_id}/records", content=body)
    assert r.status_code == 200, r.text
    return int(r.json()["held"])


def test_readers_cannot_write_and_see_what_the_writer_committed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    seen: list[object] = []

    def read() -> None:  # another thread: its own read-only connection
        seen.append(store.run("local", "proj", "r1")["rows"])
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
            store.engine.reader.execute("DELETE FROM runs")
        seen.append("refused")

    assert store.ingest("local", "proj", "r1", w.body()) == 3
    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen == [1, "refused"]
    store.close()


def test_a_full_disk_reports_its_own_error_and_keeps_whole_batches(tmp_path: Path) -> None:
    from fulmen.server.store import StoreFull

    store = SqliteStore(tmp_path / "db")
    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    assert store.ingest("local", "proj", "r1", w.body()) == 3
    before = store.run("local", "proj", "r1")
    (pages,) = store.engine.writer.execute("PRAGMA page_count").fetchone()
    # SQLite answers SQLITE_FULL past this size
    store.engine.writer.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = LogWriter(seq=w.seq)
    big._schemas = dict(w._schemas)
    for i in range(1, 3000):
        big.history(i, {"loss": float(i), "acc": float(-i)})
    with pytest.raises(StoreFull, match="database or disk is full") as info:
        store.ingest("local", "proj", "r1", big.body())
    assert "cannot rollback" not in str(info.value)
    assert store.held("local", "proj", "r1") == 3  # nothing of the batch is held
    assert store.run("local", "proj", "r1") == {**before, "updated": before["updated"]}
    store.engine.writer.execute("PRAGMA max_page_count = 1073741823")  # room again: the retry works
    assert store.ingest("local", "proj", "r1", big.body()) == big.seq
    assert store.run("local", "proj", "r1")["rows"] == 3000
    store.close()


def test_a_full_disk_answers_503_with_the_real_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "fulmen.db")
    client = TestClient(
        create_app(ServerConfig(data=tmp_path / "data"), store=store), headers=CLIENT_HEADERS
    )
    w = LogWriter()
    w.run("r1")
    post(client, "r1", w.body())
    (pages,) = store.engine.writer.execute("PRAGMA page_count").fetchone()
    store.engine.writer.execute(f"PRAGMA max_page_count = {pages}")
    for i in range(3000):
        w.history(i, {"loss": float(i)})
    r = client.post(f"{RUNS}/r1/records", content=w.body())
    assert r.status_code == 503  # the uploader retries it later (it gives up on a 507)
    assert r.headers["retry-after"] == "60"
    assert "database or disk is full" in r.json()["detail"]


def test_a_huge_row_is_written_in_chunks_and_a_small_ingest_goes_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulmen.server import _sqlstore

    monkeypatch.setattr(_sqlstore, "CHUNK_COST", 2_000)  # a 1,000-key row: about 40 chunks
    store = SqliteStore(tmp_path / "db")
    huge = LogWriter()
    huge.run("huge")
    huge.history(0, {f"k{i}": float(i) for i in range(1_000)})
    small = LogWriter()
    small.run("small")
    small.history(0, {"loss": 1.0})
    trace: list[tuple[str, str]] = []
    helper: list[threading.Thread] = []

    def small_ingest() -> None:
        assert store.ingest("local", "proj", "small", small.body()) == small.seq

    def traced(statement: str) -> None:
        who = threading.current_thread().name
        trace.append((who, statement))
        if statement == "COMMIT" and who == "huge" and not helper:
            # the huge ingest has committed its first chunk and holds the writer's lock for the
            # next one: start the small ingest, and go on only once it waits for the lock
            thread = threading.Thread(target=small_ingest, name="small")
            helper.append(thread)
            thread.start()
            deadline = time.monotonic() + 30
            while store.engine.write_lock.waiting == 0:
                assert thread.is_alive()
                assert time.monotonic() < deadline
                time.sleep(0.001)

    store.engine.writer.set_trace_callback(traced)
    worker = threading.Thread(
        target=lambda: store.ingest("local", "proj", "huge", huge.body()), name="huge"
    )
    worker.start()
    worker.join()
    helper[0].join()
    commits = [who for who, statement in trace if statement == "COMMIT"]
    assert commits.count("huge") > 10  # the huge row: many transactions, not one
    assert commits.index("small") < len(commits) - 1 - commits[::-1].index("huge")
    # the small run's whole batch (its last commit) landed while the huge one was being written
    last_small = len(commits) - 1 - commits[::-1].index("small")
    assert "huge" in commits[last_small + 1 :]
    assert store.run("local", "proj", "huge")["history_keys"]["k999"] == 1
    assert store.run("local", "proj", "small")["rows"] == 1
    assert store.held("local", "proj", "huge") == huge.seq
    store.close()
