"""The SQLite store (``fulmen.server._sqlite``): its runs' liveness, one writer with readers that
cannot write, and whole batches only. Its migrations are in test_migrations.py; its history
storage in test_series.py."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fulmen.server._sqlite import SqliteStore
from fulmen.server.app import ServerConfig, create_app
from tests.server.runlogs import LogWriter

RUNS = "/api/v1/entities/local/projects/proj/runs"


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(ServerConfig(data=tmp_path / "data")))


def post(client: TestClient, run_id: str, body: bytes) -> int:
    r = client.post(f"{RUNS}/{run_id}/records", content=body)
    assert r.status_code == 200, r.text
    return int(r.json()["held"])


def test_a_quiet_running_run_turns_stale_until_heard_from(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulmen.server import _sqlite

    monkeypatch.setattr(_sqlite, "STALE_AFTER", 0.2)
    w = LogWriter()
    w.run("r1")
    post(client, "r1", w.body())
    assert client.get(f"{RUNS}/r1").json()["stale"] is False
    time.sleep(0.3)
    assert client.get(f"{RUNS}/r1").json()["stale"] is True
    assert client.post(f"{RUNS}/r1/heartbeat").status_code == 200
    assert client.get(f"{RUNS}/r1").json()["stale"] is False
    assert client.post(f"{RUNS}/nope/heartbeat").status_code == 404
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 1.0})
    post(client, "r1", w.body())
    time.sleep(0.3)
    assert client.get(RUNS).json()["runs"][0]["stale"] is False  # only running runs go stale


def test_readers_cannot_write_and_see_what_the_writer_committed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    seen: list[object] = []

    def read() -> None:  # another thread: its own read-only connection
        seen.append(store.run("local", "proj", "r1")["rows"])
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
            store._read.execute("DELETE FROM runs")
        seen.append("refused")

    assert store.ingest("local", "proj", "r1", w.body()) == 3
    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen == [1, "refused"]
    store.close()


def test_a_record_that_does_not_decode_is_refused_and_the_rest_kept(tmp_path: Path) -> None:
    from fulmen.track import runlog as R

    store = SqliteStore(tmp_path / "db")
    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    assert store.ingest("local", "proj", "r1", w.body()) == 3
    w.history(1, {"loss": 0.5})
    bad = R.frame(R.HISTORY, R.SEQ.pack(w.seq + 1) + b"\x07\x00")  # schema 7 was never declared
    done = store.ingest_batch("local", "proj", "r1", w.frames[-1] + bad)
    assert done.held == 5  # the refused record counts as held: the client moves on
    assert done.refused == [
        {"seq": 5, "kind": "history", "field": "history", "reason": "schema 7 was never declared"}
    ]
    assert store.run("local", "proj", "r1")["rows"] == 2  # the good record before it was kept
    store.close()


def test_a_full_disk_reports_its_own_error_and_keeps_whole_batches(tmp_path: Path) -> None:
    from fulmen.server.store import StoreFull

    store = SqliteStore(tmp_path / "db")
    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    assert store.ingest("local", "proj", "r1", w.body()) == 3
    before = store.run("local", "proj", "r1")
    (pages,) = store._writer.execute("PRAGMA page_count").fetchone()
    store._writer.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite answers SQLITE_FULL
    big = LogWriter(seq=w.seq)
    big._schemas = dict(w._schemas)
    for i in range(1, 3000):
        big.history(i, {"loss": float(i), "acc": float(-i)})
    with pytest.raises(StoreFull, match="database or disk is full") as info:
        store.ingest("local", "proj", "r1", big.body())
    assert "cannot rollback" not in str(info.value)
    assert store.held("local", "proj", "r1") == 3  # nothing of the batch is held
    assert store.run("local", "proj", "r1") == {**before, "updated": before["updated"]}
    store._writer.execute("PRAGMA max_page_count = 1073741823")  # room again: the retry works
    assert store.ingest("local", "proj", "r1", big.body()) == big.seq
    assert store.run("local", "proj", "r1")["rows"] == 3000
    store.close()


def test_a_full_disk_answers_507_with_the_real_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "fulmen.db")
    client = TestClient(create_app(ServerConfig(data=tmp_path / "data"), store=store))
    w = LogWriter()
    w.run("r1")
    post(client, "r1", w.body())
    (pages,) = store._writer.execute("PRAGMA page_count").fetchone()
    store._writer.execute(f"PRAGMA max_page_count = {pages}")
    for i in range(3000):
        w.history(i, {"loss": float(i)})
    r = client.post(f"{RUNS}/r1/records", content=w.body())
    assert r.status_code == 507  # Insufficient Storage: the uploader retries later
    assert "database or disk is full" in r.json()["detail"]
