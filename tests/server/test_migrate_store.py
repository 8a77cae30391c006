"""``fulmen server migrate-store``: a whole store copied to another engine with its blobs, every
answer of the API the same after, the counts verified; a non-empty target refused; a copy that
fails leaves the target empty, and running it again works; damaged or missing sources named."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from fulmen.cli import cli
from fulmen.server._blobs import FileBlobs
from fulmen.server._migrate_store import migrate_store
from fulmen.server.app import ServerConfig, create_app
from fulmen.server.store import open_store
from tests.server.postgres import Cluster
from tests.server.runlogs import CLIENT_HEADERS, LogWriter
from tests.server.s3 import BUCKET, MotoServer

PROJECT = "/api/v1/entities/local/projects/proj"
RUNS = f"{PROJECT}/runs"


def _client(data: Path, db: str) -> TestClient:
    return TestClient(create_app(ServerConfig(data=data, db=db)), headers=CLIENT_HEADERS)


def _fill(client: TestClient) -> dict[str, bytes]:
    """Two runs with history, config, console, stats, a file and an artifact; a key, an
    anonymous space. The blobs uploaded, by digest."""
    blobs: dict[str, bytes] = {}
    for run_id in ("r1", "r2"):
        w = LogWriter()
        w.run(run_id, tags=["a"], group="g")
        w.record("config", {"lr": 0.1 if run_id == "r1" else 0.2, "opt": {"name": "sgd"}})
        for i in range(300):
            w.history(i, {"loss": 1.0 / (i + 1), "note": f"row {i}" if i % 100 == 0 else None})
        w.record("console", {"stream": "stdout", "text": f"hello from {run_id}\n"})
        w.record("stats", {"cpu": 12.5})
        w.record("file", {"path": "notes.txt", "size": 5})
        w.record("artifact", {"name": "model", "type": "model", "digest": f"m-{run_id}"})
        w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 3.0})
        assert client.post(f"{RUNS}/{run_id}/records", content=w.body()).status_code == 200
        data = f"notes of {run_id}".encode()
        digest = hashlib.sha256(data).hexdigest()
        put = client.put(
            f"{RUNS}/{run_id}/files/notes.txt", params={"digest": digest}, content=data
        )
        assert put.status_code == 200, put.text
        blobs[digest] = data
    return blobs


def _answers(client: TestClient) -> dict[str, Any]:
    """What the API answers about the store, times of day left out."""

    def clean(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run.items() if k not in ("updated", "stale")}

    out: dict[str, Any] = {"runs": [clean(r) for r in client.get(RUNS).json()["runs"]]}
    for run_id in ("r1", "r2"):
        out[run_id] = clean(client.get(f"{RUNS}/{run_id}").json())
        out[f"{run_id}/console"] = client.get(f"{RUNS}/{run_id}/console").json()
        out[f"{run_id}/files"] = client.get(f"{RUNS}/{run_id}/files").json()
        out[f"{run_id}/file"] = client.get(f"{RUNS}/{run_id}/files/notes.txt").content.decode()
        out[f"{run_id}/export"] = client.get(f"{RUNS}/{run_id}/history/export?format=jsonl").text
        out[f"{run_id}/values"] = client.get(
            f"{RUNS}/{run_id}/history/values", params={"key": "note"}
        ).json()
    out["history"] = client.get(
        f"{PROJECT}/history", params={"run": ["r1", "r2"], "key": "loss", "buckets": 20}
    ).json()
    out["artifacts"] = client.get(f"{PROJECT}/artifacts/model").json()
    out["columns"] = client.get(f"{PROJECT}/columns").json()
    return out


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, Path, dict[str, Any], dict[str, bytes], str]:
    """A filled SQLite store in ``tmp_path/old``: its URL, data folder, answers, blobs, a key."""
    data = tmp_path / "old"
    url = f"sqlite:///{data / 'fulmen.db'}"
    client = _client(data, url)
    blobs = _fill(client)
    answers = _answers(client)
    store = open_store(data, url)
    key = store.create_key("team")
    store.close()
    return url, data, answers, blobs, key


def test_a_sqlite_store_moves_to_postgresql_with_its_blobs_and_answers_the_same(
    source: tuple[str, Path, dict[str, Any], dict[str, bytes], str],
    pg_cluster: Cluster,
    tmp_path: Path,
) -> None:
    url, data, answers, blobs, key = source
    target = pg_cluster.create_database()
    new_blobs = tmp_path / "new" / "blobs"  # the blob folder of data folder tmp_path/new
    result = CliRunner().invoke(
        cli,
        ["server", "--data", str(data), "migrate-store", "--from", url, "--to", target,
         "--to-blobs", str(new_blobs)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "blobs: 2 copied, 0 already there" in result.output
    assert "runs                        2 rows (verified)" in result.output
    for digest, content in blobs.items():  # the bytes, in the new blob folder
        assert b"".join(FileBlobs(new_blobs).open(digest).chunks) == content
    (data / "blobs").rename(tmp_path / "gone")  # served from the new folder only
    assert _answers(_client(tmp_path / "new", target)) == answers
    store = open_store(data, target)
    assert store.entity_for_key(key) == "team"
    # the copy goes on as a store: a new run and a new artifact version take new numbers
    w = LogWriter()
    w.run("r3")
    w.record("artifact", {"name": "model", "type": "model", "digest": "m-r3"})
    assert store.ingest("local", "proj", "r3", w.body()) == w.seq
    assert [v["version"] for v in store.artifact_versions("local", "proj", "model")] == [
        "v0",
        "v1",
        "v2",
    ]
    assert store.run("local", "proj", "r3")["rows"] == 0
    store.close()
    again = CliRunner().invoke(
        cli, ["server", "--data", str(data), "migrate-store", "--from", url, "--to", target]
    )
    assert again.exit_code == 1
    assert "is not empty" in again.output
    assert "migrate-store copies into an empty store only" in again.output


def test_blobs_move_into_an_object_store_with_the_store(
    source: tuple[str, Path, dict[str, Any], dict[str, bytes], str],
    pg_cluster: Cluster,
    moto: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # the team move in one command: SQLite + a blob folder -> PostgreSQL + an S3 bucket
    url, data, answers, blobs, _ = source
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    prefix = f"moved-{tmp_path.name}"
    bucket = f"s3://{BUCKET}/{prefix}"
    target = pg_cluster.create_database()
    result = CliRunner().invoke(
        cli,
        ["server", "--data", str(data), "migrate-store", "--from", url, "--to", target,
         "--to-blobs", bucket],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "blobs: 2 copied, 0 already there" in result.output
    assert moto.keys(prefix) == sorted(f"{prefix}/{d[:2]}/{d}" for d in blobs)
    (data / "blobs").rename(tmp_path / "gone")  # served from the bucket only
    app = create_app(ServerConfig(data=tmp_path / "new", db=target, blobs=bucket))
    assert _answers(TestClient(app, headers=CLIENT_HEADERS)) == answers
    # and back: the bucket as --from-blobs, a folder as --to-blobs
    back = tmp_path / "back"
    result = CliRunner().invoke(
        cli,
        ["server", "--data", str(back), "migrate-store", "--from", target,
         "--to", f"sqlite:///{back / 'fulmen.db'}", "--from-blobs", bucket],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # --to-blobs defaults to --from-blobs: the blobs stay in the bucket, only checked
    assert "blobs: 0 copied, 2 already there" in result.output
    result = CliRunner().invoke(
        cli,
        ["server", "--data", str(back), "migrate-store", "--from", target,
         "--to", f"sqlite:///{back / 'again.db'}", "--from-blobs", bucket,
         "--to-blobs", str(back / "blobs")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "blobs: 2 copied, 0 already there" in result.output
    for digest, content in blobs.items():
        assert b"".join(FileBlobs(back / "blobs").open(digest).chunks) == content


def test_a_failed_copy_leaves_the_target_empty_and_the_retry_works(
    source: tuple[str, Path, dict[str, Any], dict[str, bytes], str],
    pg_cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fulmen.server._postgres import PostgresEngine

    url, data, _, _, _ = source
    target = pg_cluster.create_database()
    real = PostgresEngine.load_rows
    seen: list[str] = []

    def fails_late(self: PostgresEngine, con: Any, table: str, *args: Any) -> int:
        seen.append(table)
        if table == "series":  # half the tables are in: then the copy dies
            raise KeyboardInterrupt
        return real(self, con, table, *args)

    monkeypatch.setattr(PostgresEngine, "load_rows", fails_late)
    blobs = FileBlobs(data / "blobs")
    with pytest.raises(KeyboardInterrupt):
        migrate_store(url, target, data=data, source_blobs=blobs, target_blobs=blobs, echo=str)
    assert "runs" in seen  # rows were written before it died
    store = open_store(data, target)
    assert set(store.counts().values()) == {0}  # ... and none of them is kept
    store.close()
    monkeypatch.setattr(PostgresEngine, "load_rows", real)
    done = migrate_store(url, target, data=data, source_blobs=blobs, target_blobs=blobs, echo=str)
    assert done.rows["runs"] == 2
    assert (done.blobs_copied, done.blobs_present) == (0, 2)  # the same folder: checked only


def test_a_postgresql_store_moves_back_to_sqlite(pg_cluster: Cluster, tmp_path: Path) -> None:
    start = pg_cluster.create_database()
    client = _client(tmp_path / "pg", start)
    _fill(client)
    answers = _answers(client)
    back = f"sqlite:///{tmp_path / 'back' / 'fulmen.db'}"
    blobs = FileBlobs(tmp_path / "pg" / "blobs")
    done = migrate_store(start, back, data=tmp_path / "pg", source_blobs=blobs,
                         target_blobs=blobs, echo=str)  # fmt: skip
    assert done.rows["points"] > 0
    moved = _client(tmp_path / "pg", back)  # the same data folder: the same blobs
    assert _answers(moved) == answers


def test_an_old_sqlite_stores_nul_text_and_nan_json_are_made_what_postgresql_holds(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fulmen.db'}"
    store = open_store(tmp_path, url)
    w = LogWriter()
    w.run("r1")
    w.record("console", {"stream": "stdout", "text": "x"})
    store.ingest("local", "proj", "r1", w.body())
    store.close()
    with sqlite3.connect(tmp_path / "fulmen.db") as con:  # as a server before the NUL rule wrote
        con.execute("UPDATE console SET text = 'a' || char(0) || 'b'")
        con.execute("""UPDATE runs SET config = '{"lr": NaN, "k": "\\u0000"}', summary = 'x'""")
    target = pg_cluster.create_database()
    blobs = FileBlobs(tmp_path / "blobs")
    done = migrate_store(url, target, data=tmp_path, source_blobs=blobs, target_blobs=blobs,
                         echo=str)  # fmt: skip
    assert done.changed == 3
    moved = open_store(tmp_path, target)
    assert moved.console("local", "proj", "r1", 0, 10)[0]["text"] == "a\\x00b"
    run = moved.run("local", "proj", "r1")
    assert run["config"] == {"lr": None, "k": "\\x00"}
    assert run["summary"] == {}
    moved.close()


def test_clear_errors_for_bad_arguments_and_damaged_sources(
    source: tuple[str, Path, dict[str, Any], dict[str, bytes], str],
    pg_cluster: Cluster,
    tmp_path: Path,
) -> None:
    url, data, _, blobs, _ = source

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["server", "--data", str(data), "migrate-store", *args])
        assert result.exit_code != 0
        return result.output

    assert "--to 'mysql://...': use sqlite:///PATH" in run("--from", url, "--to", "mysql://a@b/c")
    assert "--from and --to are the same database" in run("--from", url, "--to", url)
    assert "Missing option '--to'" in run("--from", url)
    out = run("--from", url, "--to", "sqlite:///x.db", "--to-blobs", "ftp://host/blobs")
    assert "--to-blobs 'ftp://host/blobs': give s3://BUCKET[/PREFIX]" in out
    target = pg_cluster.create_database()
    digest = next(iter(blobs))
    (data / "blobs" / digest[:2] / digest).write_bytes(b"not the bytes")
    out = run("--from", url, "--to", target, "--to-blobs", str(tmp_path / "new"))
    assert f"blob {digest} in --from-blobs is damaged" in out
    (data / "blobs" / digest[:2] / digest).unlink()
    out = run("--from", url, "--to", target, "--to-blobs", str(tmp_path / "new"))
    assert f"blob {digest} " in out
    assert "is recorded in the store but not in --from-blobs" in out
