"""The versioned store on each engine: migrations applied in order at start, a store made before
versions upgraded with its data (SQLite), a store from a newer server refused, a failed migration
rolled back, several PostgreSQL servers starting together migrating once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from fulmen.server._migrations import MIGRATIONS, Migration, StoreTooNew, check
from fulmen.server._sqlite import SqliteStore, migrate
from fulmen.server.store import HistoryQuery
from tests.server.postgres import Cluster
from tests.server.runlogs import LogWriter

BEFORE_VERSIONS = Path(__file__).parent / "fixtures" / "store_before_versions.sql"
LATEST = MIGRATIONS[-1].version


def _version(path: Path) -> int:
    with sqlite3.connect(path) as con:
        return int(con.execute("PRAGMA user_version").fetchone()[0])


def _dump(*values: object) -> bytes:
    return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)  # bucket arrays are numpy


def _run_log(run_id: str, steps: range) -> bytes:
    w = LogWriter()
    w.run(run_id)
    w.record("config", {"lr": 0.1})
    for i in steps:
        w.history(i, {"loss": 1.0 / (i + 1)})
    return w.body()


def test_migration_versions_are_1_2_3_in_order() -> None:
    check(MIGRATIONS)
    with pytest.raises(ValueError, match=r"got \[1, 3\]"):
        check((MIGRATIONS[0], Migration(3, "a gap", {"sqlite": ()})))


def test_a_new_store_is_at_the_latest_version(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    assert store.version == LATEST
    store.close()
    assert _version(tmp_path / "db") == LATEST


def test_a_store_made_before_versions_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    # the schema as it was before versions (checked in verbatim), with data written in it by SQL
    path = tmp_path / "db"
    with sqlite3.connect(path) as con:
        con.executescript(BEFORE_VERSIONS.read_text())
        con.execute(
            "INSERT INTO runs (entity, project, run_id, name, state, created, updated, config,"
            " summary) VALUES ('local', 'proj', 'old', 'an old run', 'finished', 1.0, 2.0,"
            " '{\"lr\": 0.5}', '{\"loss\": 0.25}')"
        )
        con.execute(
            "INSERT INTO api_keys (hash, entity, created) VALUES"
            " ('9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', 'team', 1.0)"
        )  # the SHA-256 of "test"
    assert _version(path) == 0
    store = SqliteStore(path)
    assert store.version == LATEST
    old = store.run("local", "proj", "old")
    assert (old["name"], old["state"]) == ("an old run", "finished")
    assert (old["config"], old["summary"]) == ({"lr": 0.5}, {"loss": 0.25})
    assert store.entity_for_key("test") == "team"
    assert store.ingest("local", "proj", "new", _run_log("new", range(5))) == 8  # still writes
    store.close()
    assert _version(path) == LATEST


def test_a_store_with_ingested_runs_survives_the_upgrade(tmp_path: Path) -> None:
    # a store the server filled before versions: the same tables, user_version 0
    path = tmp_path / "db"
    store = SqliteStore(path)
    body = _run_log("r1", range(300))
    held = store.ingest("local", "proj", "r1", body)
    query = HistoryQuery(runs=("r1",), keys=("loss",), buckets=50)
    before = _dump(store.run("local", "proj", "r1"), store.history("local", "proj", query))
    store.close()
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA user_version = 0")
    store = SqliteStore(path)
    after = _dump(store.run("local", "proj", "r1"), store.history("local", "proj", query))
    assert after == before
    assert store.held("local", "proj", "r1") == held
    more = LogWriter(seq=held)
    more.history(300, {"loss": 0.0})
    assert store.ingest("local", "proj", "r1", more.body()) == held + 2  # its SCHEMA and row
    store.close()


def test_later_migrations_run_once_in_order_with_the_data_kept(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = SqliteStore(path)
    store.ingest("local", "proj", "r1", _run_log("r1", range(3)))
    store.close()
    later = (
        *MIGRATIONS,
        Migration(LATEST + 1, "a column", {"sqlite": ("ALTER TABLE runs ADD COLUMN extra TEXT",)}),
        Migration(LATEST + 2, "fill it", {"sqlite": ("UPDATE runs SET extra = name || '!'",)}),
    )
    con = sqlite3.connect(path, isolation_level=None)
    assert migrate(con, later, where=str(path)) == LATEST + 2
    assert migrate(con, later, where=str(path)) == LATEST + 2  # nothing left: ALTER not rerun
    assert con.execute("SELECT run_id, extra FROM runs").fetchall() == [("r1", "r1!")]
    con.close()
    with pytest.raises(StoreTooNew) as raised:  # this server's list stops at LATEST
        SqliteStore(path)
    message = str(raised.value)
    assert f"schema version {LATEST + 2}" in message
    assert f"newer than this server's {LATEST}" in message
    assert str(path) in message


def test_a_failed_migration_leaves_the_store_at_the_version_before(tmp_path: Path) -> None:
    path = tmp_path / "db"
    SqliteStore(path).close()
    broken = (
        *MIGRATIONS,
        Migration(
            LATEST + 1,
            "half of it fails",
            {"sqlite": ("CREATE TABLE extra (x INTEGER)", "INSERT INTO nowhere VALUES (1)")},
        ),
    )
    con = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        migrate(con, broken, where=str(path))
    assert not con.in_transaction
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "extra" not in tables  # rolled back with the version
    con.close()
    assert _version(path) == LATEST


def test_a_migration_names_the_engine_it_lacks() -> None:
    half = Migration(LATEST + 1, "sqlite only", {"sqlite": ("SELECT 1",)})
    lacks = r"no statements for engine 'postgresql'; it has \['sqlite'\]"
    with pytest.raises(ValueError, match=lacks):
        half.statements("postgresql")
    with pytest.raises(ValueError, match=r"sqlite only\) has no statements for postgresql"):
        check((*MIGRATIONS, half))


def test_fulmen_server_refuses_a_newer_store_before_listening(tmp_path: Path) -> None:
    from fulmen.server._serve import serve

    data = tmp_path / "data"
    SqliteStore(data / "fulmen.db").close()
    with sqlite3.connect(data / "fulmen.db") as con:
        con.execute(f"PRAGMA user_version = {LATEST + 7}")
    with pytest.raises(SystemExit) as raised:
        serve("127.0.0.1", 0, data, None)
    assert str(raised.value).startswith("fulmen server: the store at ")
    assert f"schema version {LATEST + 7}, newer than this server's {LATEST}" in str(raised.value)


# --- PostgreSQL: the version in schema_version, the same list of migrations ------------------


def _pg_versions(url: str) -> list[tuple[int, str]]:
    import psycopg

    with psycopg.connect(url) as con:
        return [
            (int(v), str(t))
            for v, t in con.execute("SELECT version, title FROM schema_version ORDER BY version")
        ]


def test_a_new_postgresql_store_is_at_the_latest_version(pg_cluster: Cluster) -> None:
    from fulmen.server._postgres import PostgresStore

    url = pg_cluster.create_database()
    store = PostgresStore(url)
    assert store.version == LATEST
    store.close()
    assert _pg_versions(url) == [(m.version, m.title) for m in MIGRATIONS]
    again = PostgresStore(url)  # nothing left to run
    assert again.version == LATEST
    again.close()
    assert len(_pg_versions(url)) == LATEST


def test_postgresql_migrations_run_once_in_order_and_a_newer_store_is_refused(
    pg_cluster: Cluster,
) -> None:
    import psycopg

    from fulmen.server._postgres import PostgresStore, migrate

    url = pg_cluster.create_database()
    store = PostgresStore(url)
    store.ingest("local", "proj", "r1", _run_log("r1", range(3)))
    store.close()
    later = (
        *MIGRATIONS,
        Migration(
            LATEST + 1, "a column", {"postgresql": ("ALTER TABLE runs ADD COLUMN extra TEXT",)}
        ),
        Migration(LATEST + 2, "fill it", {"postgresql": ("UPDATE runs SET extra = name || '!'",)}),
    )
    with psycopg.connect(url, autocommit=True) as con:
        assert migrate(con, later, where="db") == LATEST + 2
        assert migrate(con, later, where="db") == LATEST + 2  # nothing left: ALTER not rerun
        assert con.execute("SELECT run_id, extra FROM runs").fetchall() == [("r1", "r1!")]
    with pytest.raises(StoreTooNew) as raised:  # this server's list stops at LATEST
        PostgresStore(url.replace("fulmen@", "fulmen:s3cr3t-pw@"))
    message = str(raised.value)
    assert f"schema version {LATEST + 2}, newer than this server's {LATEST}" in message
    assert "fulmen:***@" in message  # the URL, without its password
    assert "s3cr3t" not in message


def test_a_failed_postgresql_migration_leaves_the_version_before(pg_cluster: Cluster) -> None:
    import psycopg

    from fulmen.server._postgres import PostgresStore, migrate

    url = pg_cluster.create_database()
    PostgresStore(url).close()
    broken = (
        *MIGRATIONS,
        Migration(
            LATEST + 1,
            "half of it fails",
            {"postgresql": ("CREATE TABLE extra (x INTEGER)", "INSERT INTO nowhere VALUES (1)")},
        ),
    )
    with psycopg.connect(url, autocommit=True) as con:
        with pytest.raises(psycopg.errors.UndefinedTable, match="nowhere"):
            migrate(con, broken, where="db")
        tables = {r[0] for r in con.execute("SELECT tablename FROM pg_tables")}
    assert "extra" not in tables  # rolled back with the version (PostgreSQL's DDL is transactional)
    assert len(_pg_versions(url)) == LATEST


def test_postgresql_servers_starting_together_migrate_once(pg_cluster: Cluster) -> None:
    import threading

    from fulmen.server._postgres import PostgresStore

    url = pg_cluster.create_database()
    opened: list[object] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            store = PostgresStore(url, pool_size=1)
            opened.append(store.version)
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert opened == [LATEST] * 4
    assert _pg_versions(url) == [(m.version, m.title) for m in MIGRATIONS]


def test_fulmen_server_refuses_a_newer_postgresql_store_before_listening(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    import psycopg

    from fulmen.server._postgres import PostgresStore
    from fulmen.server._serve import serve

    url = pg_cluster.create_database()
    PostgresStore(url).close()
    with psycopg.connect(url) as con:
        con.execute("INSERT INTO schema_version VALUES (%s, 'from the future', 0)", (LATEST + 7,))
    with pytest.raises(SystemExit) as raised:
        serve("127.0.0.1", 0, tmp_path / "data", url)
    assert str(raised.value).startswith("fulmen server: the store at postgresql://")
    assert f"schema version {LATEST + 7}, newer than this server's {LATEST}" in str(raised.value)
