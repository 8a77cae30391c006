"""The embedded engine: one SQLite file in WAL mode, under ``_sqlstore.SqlStore`` (the queries).

One writer, many readers: every write goes through one connection under one lock (so no two
writers ever contend and "database is locked" cannot happen), and each reading thread has its own
connection, which WAL lets read while the writer writes. The lock is first come first served
(``WriteLock``), and no write holds it long: a batch's history is written in chunks of about
``_sqlstore.CHUNK_COST`` (a 100,000-key row is many), each its own transaction (``chunked``), and
everything else with ``held`` in one last transaction. One server process per data folder
(``fulmen server`` locks it), so the locks of this process are every lock there is.

The schema version is ``PRAGMA user_version`` (``migrate``). The sweep tables' statements live in
``fulmen.sweep._sql`` (shared with the local sweeps file), the reports' and workspaces' in
``_store_reports`` and ``_store_workspaces``; ``SqlStore`` runs them on this engine's transactions.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from fulmen.server._migrations import MIGRATIONS, Migration, StoreTooNew
from fulmen.server._sqlstore import Connection, Dialect, HeldRun, SqlStore, field_path
from fulmen.server.store import StoreFull
from fulmen.sweep._sql import sqlite_snapshot

__all__ = ["SqliteEngine", "SqliteStore", "migrate", "transaction"]

SCAN_ROWS = 500  # rows per batch when a table is copied (a row of points is ~160 KiB)
# The writer's commits never wait for a checkpoint (the copy of the WAL back into the database,
# with its fsyncs: most of a big ingest's time when the writer did it at each commit); the
# checkpointer thread does it after writes, at most every CHECKPOINT_S. The writer still does it
# itself past WAL_BACKSTOP pages (should the thread fall behind), and a WAL bigger than
# WAL_KEEP bytes is cut back to that once checkpointed.
CHECKPOINT_S = 0.5
WAL_BACKSTOP = 65_536  # pages (256 MiB at SQLite's 4 KiB)
WAL_KEEP = 64 << 20


def json_path(dotted: str) -> str:
    """``a.b`` -> ``$."a"."b"`` (names are validated: no quotes reach here)."""
    return "$" + "".join(f'."{p}"' for p in field_path(dotted))


def _valid(column: str) -> str:
    """SQL for ``column`` when it holds valid JSON, else NULL (SQLite's JSON functions fail on
    malformed JSON; a query over many runs must not fail for one)."""
    return f"(CASE WHEN json_valid({column}) THEN {column} END)"


class SqliteDialect:
    """``_sqlstore.Dialect`` for SQLite: JSON as text, read with ``json_extract``."""

    least = "min"
    greatest = "max"
    ilike = "LIKE"  # SQLite's LIKE ignores the case of ASCII letters
    for_update = ""  # one writer: what it read stays as it was until it commits

    def json_value(self, column: str, path: str) -> tuple[str, list[Any]]:
        return f"json_extract({_valid(column)}, ?)", [json_path(path)]

    def json_param(self, value: Any) -> tuple[str, Any]:
        return "?", int(value) if isinstance(value, bool) else value  # json_extract(true) is 1

    def json_text(self, column: str, path: str) -> tuple[str, list[Any]]:
        return f"json_extract({_valid(column)}, ?)", [json_path(path)]

    def has_tag(self) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({_valid('runs.tags')}) WHERE value=?)"

    def tag_like(self) -> str:
        each = f"json_each({_valid('runs.tags')})"
        return f"EXISTS (SELECT 1 FROM {each} WHERE value LIKE ? ESCAPE '\\')"

    def object_keys(self, column: str) -> str:
        return f"json_each({_valid('runs.' + column)}) AS j"


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")  # a TEXT value that is not UTF-8 must not fail a read


def _full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; the message before that
    return isinstance(exc, sqlite3.OperationalError) and (
        code == getattr(sqlite3, "SQLITE_FULL", 13) or "database or disk is full" in str(exc)
    )


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on ``con``: committed, or rolled back on any error, which is raised
    as it was. SQLite rolls some failures back itself (SQLITE_FULL: "database or disk is full"),
    after which a ROLLBACK would fail with "cannot rollback - no transaction is active" and hide
    the real error: it is only sent while a transaction is open. A full disk is ``StoreFull``."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
        con.execute("COMMIT")
    except BaseException as exc:
        if con.in_transaction:
            with suppress(sqlite3.Error):  # the error that got us here is the one to report
                con.execute("ROLLBACK")
        if _full(exc):
            raise StoreFull(f"the database {_db_name(con)} is full: {exc}") from exc
        raise


def _db_name(con: sqlite3.Connection) -> str:
    row = con.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else "?"


def migrate(con: sqlite3.Connection, migrations: tuple[Migration, ...], *, where: str) -> int:
    """Bring the database on ``con`` to the last of ``migrations``; its version after.

    The version is SQLite's ``PRAGMA user_version`` (0 in a new file, and in the files the server
    wrote before it had versions, whose tables migration 1 creates ``IF NOT EXISTS``: a no-op
    there). Each migration runs in its own transaction, with the version bump in it, so a kill
    leaves the store at one version or the next. A store newer than ``migrations`` is refused
    (``StoreTooNew``): an older server would misread it."""
    latest = migrations[-1].version if migrations else 0
    while True:
        con.execute("BEGIN IMMEDIATE")  # one process migrates; another waits, then sees it done
        try:
            (current,) = con.execute("PRAGMA user_version").fetchone()
            if current > latest:
                raise StoreTooNew(where, current, latest)
            step = next((m for m in migrations if m.version > current), None)
            if step is None:
                con.execute("COMMIT")
                return int(current)
            for statement in step.statements("sqlite"):
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {int(step.version)}")
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise


class WriteLock:
    """The writer's lock, first come first served. ``threading.Lock`` lets the thread that
    releases it take it straight back, so a writer that loops over chunks would starve the
    others; here a writer that comes back goes behind every writer already waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[object] = collections.deque()
        self._held = False

    @property
    def waiting(self) -> int:
        """How many writers wait for the lock."""
        return len(self._queue)

    def __enter__(self) -> None:
        me = object()
        with self._cond:
            self._queue.append(me)
            try:
                while self._held or self._queue[0] is not me:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the queue
                self._queue.remove(me)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._held = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


class Checkpointer:
    """The thread that checkpoints the WAL (``PRAGMA wal_checkpoint(PASSIVE)``: what readers
    still see stays) on its own connection, woken by ``poke`` after each write transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fulmen-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=10000")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._halt.is_set():
                    break
                with suppress(sqlite3.Error):  # busy or failing: the next write pokes again
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self._halt.wait(CHECKPOINT_S):  # writes meanwhile are checkpointed together
                    break
        finally:
            con.close()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        self._thread.join(30)


class SqliteEngine:
    """``_sqlstore.Engine`` on one SQLite file (see the module docstring)."""

    name = "sqlite"
    chunked = True
    dialect: Dialect = SqliteDialect()

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # owner-only, as the blobs are: SQLite gives the -wal and -shm files the database's mode
        path.touch(mode=0o600)
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if part.exists():
                part.chmod(0o600)  # a database made before this rule
        self.path = path
        self.where = str(path)
        self.write_lock = WriteLock()
        # one lock per run being ingested (weak: it goes with the last ingest holding it)
        self._run_locks: weakref.WeakValueDictionary[tuple[str, str, str], threading.Lock]
        self._run_locks = weakref.WeakValueDictionary()
        self._run_locks_lock = threading.Lock()
        self.writer = self._connect()
        self.writer.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP}")
        self.writer.execute(f"PRAGMA journal_size_limit={WAL_KEEP}")
        self.version = migrate(self.writer, MIGRATIONS, where=str(path))
        self.checkpointer = Checkpointer(path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill; WAL keeps order
        con.execute("PRAGMA busy_timeout=10000")
        con.execute("PRAGMA cache_size=-65536")
        return con

    @property
    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.execute("PRAGMA query_only=ON")
            con.text_factory = _decode_text
            self._local.con = con
            with self._readers_lock:
                self._readers.append(con)
        return con

    @contextmanager
    def read(self) -> Iterator[Connection]:
        yield self.reader

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        with sqlite_snapshot(self.reader) as con:  # one deferred transaction: a WAL snapshot
            yield con

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.write_lock, transaction(self.writer):
            yield self.writer
        self.checkpointer.poke()

    @contextmanager
    def hold_run(self, entity: str, project: str, run_id: str) -> Iterator[HeldRun]:
        with self._run_lock(entity, project, run_id):  # one batch of a run at a time
            with self.write_lock:
                row = self.writer.execute(
                    "SELECT rid, held, ingest_state FROM runs "
                    "WHERE entity=? AND project=? AND run_id=?",
                    (entity, project, run_id),
                ).fetchone()
            yield (int(row[0]), int(row[1]), row[2]) if row else (None, 0, None)

    def lock(self, con: Connection, key: str) -> None:
        """One writer: every write transaction holds every key."""

    def tables(self) -> list[str]:
        rows = self.reader.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def scan(self, table: str) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
        con = self._connect()  # its own connection: the scan outlives any one read
        con.execute("PRAGMA query_only=ON")
        con.text_factory = _decode_text
        try:
            found = con.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in found.description]
            while rows := found.fetchmany(SCAN_ROWS):
                yield columns, rows
        finally:
            con.close()

    def load_rows(
        self, con: Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]
    ) -> int:
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" * len(columns))
        con.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
        return 0  # SQLite's columns take any value

    def _run_lock(self, entity: str, project: str, run_id: str) -> threading.Lock:
        key = (entity, project, run_id)
        with self._run_locks_lock:
            lock = self._run_locks.get(key)
            if lock is None:
                lock = self._run_locks[key] = threading.Lock()
        return lock

    def close(self) -> None:
        self.checkpointer.stop()  # first: the writer, closed last, checkpoints what is left
        with self._readers_lock:
            for con in self._readers:
                con.close()
            self._readers.clear()
        with self.write_lock:
            self.writer.close()


def SqliteStore(path: Path) -> SqlStore:  # the store's name from before engines
    """The store on the SQLite file ``path`` (created, or migrated to this server's schema)."""
    return SqlStore(SqliteEngine(path))
