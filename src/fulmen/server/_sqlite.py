"""The embedded store: one SQLite file in WAL mode. With ``_store_reports`` (the reports' SQL,
shared with the other store engines), the only module of fulmen with SQL in it (which is why it is
long: every other query the server makes is here, and nowhere else).

One writer, many readers: every write goes through one connection under one lock (so no two
writers ever contend and "database is locked" cannot happen), and each reading thread has its own
connection, which WAL lets read while the writer writes. The lock is first come first served
(``WriteLock``), and no write holds it long: a batch's history is written in chunks of about
``CHUNK_COST`` (a 100,000-key row is many), each its own transaction, and everything else with
``held`` in one last transaction; so after a kill -9 ``held`` still says which batches are whole
(the chunks of a batch not yet held are written again, to the same effect, when it is resent).

Tables: ``runs`` (one row per run with config, summary and metadata as JSON, the run's ingest state
and ``held``), ``segments`` (the accepted frames verbatim, for export), ``series`` / ``pieces`` /
``points`` (scalar history, see ``_series``), ``console``, ``stats``, ``files``, ``artifacts`` and
``aliases``, ``blobs`` (which entity may read which digest), ``api_keys`` (SHA-256 hashes only),
``anonymous`` (hashes of the anonymous spaces' tokens), ``reports`` and ``report_snapshots``.
The sweep tables (``sweeps``, ``sweep_trials``, ``sweep_reports``, ``sweep_agents``) are the
exception to "all SQL here": their statements live in ``fulmen.sweep._sql``, shared with the
local sweeps file; this store only gives them its transactions (``sweep_database``).
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from fulmen.server import _series as S
from fulmen.server._ingest import ROWS, Batch, RunState, decode_batch, json_safe
from fulmen.server._migrations import MIGRATIONS, Migration, StoreTooNew
from fulmen.server._store_reports import ReportSql
from fulmen.server._store_workspaces import WorkspaceSQL
from fulmen.server.store import (
    RUN_FIELDS,
    Conflict,
    Filter,
    HistoryQuery,
    Ingested,
    NotFound,
    RunPage,
    RunQuery,
    StoreFull,
    column_paths,
)
from fulmen.sweep._sql import Connections, sqlite_snapshot

SORT_COLUMNS = {"created", "updated", "name", "state", "runtime", "rows", "run_id", "id", "group",
                "job_type"}  # fmt: skip
FIELD_COLUMNS = {"id": "run_id", "group": "grp"}  # RUN_FIELDS names that are not the column's
OPS = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "~": "LIKE"}
ANON_PREFIX = "anon-"
STALE_AFTER = 300.0  # seconds without records or heartbeats before a running run is "stale"
BLOCK = 64  # pieces per overview block: a chart over 1M points reads 4 rows per series


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def json_path(dotted: str) -> str:
    """``a.b`` -> ``$."a"."b"`` (names are validated: no quotes reach here)."""
    parts = dotted.split(".")
    if any(not p or '"' in p or "\\" in p for p in parts):
        raise ValueError(f"bad field path {dotted!r}")
    return "$" + "".join(f'."{p}"' for p in parts)


def _pick(data: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    """Only the values at ``paths`` (each a list of nested keys) of ``data``, nesting kept."""
    out: dict[str, Any] = {}
    for path in paths:
        value: Any = data
        for part in path:
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            target = out
            for part in path[:-1]:
                target = target.setdefault(part, {})
            if path:
                target[path[-1]] = value
    return out


def _like(value: Any) -> str:
    """A LIKE pattern matching ``value`` anywhere, its wildcards escaped (``ESCAPE '\\'``)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _keep_fields(runs: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    for column in ("config", "summary"):
        paths = [f.split(".")[1:] for f in fields if f.split(".")[0] == column]
        for run in runs:
            run[column] = _pick(run[column], paths)


def _dumps(value: Any) -> str:
    return json.dumps(json_safe(value), separators=(",", ":"), default=str)


# Reading: a stored value is shown whatever it is. Ingest writes only valid values, but a store
# from an older server, a bug or a hand edit may hold anything (SQLite columns take any type), and
# one such value must not fail every page that lists the run: each is read as what its column
# should hold, or None (or the column's empty value) when it is not.


def _valid(column: str) -> str:
    """SQL for ``column`` when it holds valid JSON, else NULL (SQLite's JSON functions fail on
    malformed JSON; a query over many runs must not fail for one)."""
    return f"(CASE WHEN json_valid({column}) THEN {column} END)"


def _loads(text: Any, empty: Any = None) -> Any:
    """A stored JSON column as a JSON-safe value (NaN and infinities as None); ``empty`` when it
    is not JSON or, when ``empty`` is a dict or list, not one of those."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return empty
    try:
        value = json_safe(json.loads(text))
    except (ValueError, RecursionError):
        return empty
    if empty is not None and not isinstance(value, type(empty)):
        return empty
    return value


def _num(value: Any) -> float | int | None:
    """A stored number, or None when it is not a finite one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def _text(value: Any) -> str | None:
    """A stored text, or None; bytes (a BLOB where text belongs) decoded, numbers written out."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


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


# work per write transaction: points and values, plus KEY_COST per key. About what a batch of 4 MiB
# (the uploader's) of scalar rows costs, so those stay one transaction (each commit can cost a WAL
# checkpoint); a 100,000-key row is about 15 of them, about a second each, not one of 20 s.
CHUNK_COST = 1_000_000
KEY_COST = 150  # a key's statements (series, pieces, points rows) cost as much as this many points


def _chunks(series: list[tuple[str, Any]]) -> Iterator[list[tuple[str, Any]]]:
    """``Batch.series`` cut into runs of operations costing at most about ``CHUNK_COST`` each,
    in order (a key's points are cut too, so one huge key is several chunks)."""
    chunk: list[tuple[str, Any]] = []
    cost = 0
    for op, arg in series:
        if op == "points":
            current: dict[str, Any] | None = None  # this operation's points in this chunk
            for key, points in arg.items():
                for start in range(0, points.shape[1], CHUNK_COST):
                    part = points[:, start : start + CHUNK_COST]
                    if chunk and cost + KEY_COST + part.shape[1] > CHUNK_COST:
                        yield chunk
                        chunk, cost, current = [], 0, None
                    if current is None:
                        current = {}
                        chunk.append(("points", current))
                    current[key] = part
                    cost += KEY_COST + part.shape[1]
        elif op == "values":
            for start in range(0, len(arg), CHUNK_COST):
                part = arg[start : start + CHUNK_COST]
                if chunk and cost + len(part) > CHUNK_COST:
                    yield chunk
                    chunk, cost = [], 0
                chunk.append(("values", part))
                cost += len(part)
        else:
            chunk.append((op, arg))
            cost += KEY_COST
    if chunk:
        yield chunk


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


class SqliteStore:
    """The ``Store`` on one SQLite file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # owner-only, as the blobs are: SQLite gives the -wal and -shm files the database's mode
        path.touch(mode=0o600)
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if part.exists():
                part.chmod(0o600)  # a database made before this rule
        self.path = path
        self._lock = WriteLock()
        # one lock per run being ingested (weak: it goes with the last ingest holding it)
        self._run_locks: weakref.WeakValueDictionary[tuple[str, str, str], threading.Lock]
        self._run_locks = weakref.WeakValueDictionary()
        self._run_locks_lock = threading.Lock()
        self._writer = self._connect()
        self.version = migrate(self._writer, MIGRATIONS, where=str(path))
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._reports = ReportSql("qmark")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill; WAL keeps order
        con.execute("PRAGMA busy_timeout=10000")
        con.execute("PRAGMA cache_size=-65536")
        return con

    @property
    def _read(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.execute("PRAGMA query_only=ON")
            con.text_factory = _decode_text
            self._local.con = con
            with self._readers_lock:
                self._readers.append(con)
        return con

    def sweep_database(self) -> Connections:
        """Writes on the writer under its lock (``BEGIN IMMEDIATE``: a claim sees every claim
        before it), reads on the reading thread's connection (a WAL snapshot)."""
        return Connections(self._sweep_write, lambda: sqlite_snapshot(self._read))

    @contextmanager
    def _sweep_write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, transaction(self._writer):
            yield self._writer

    def close(self) -> None:
        with self._readers_lock:
            for con in self._readers:
                con.close()
            self._readers.clear()
        with self._lock:
            self._writer.close()

    # --- ingest --------------------------------------------------------------------------------

    def ingest(self, entity: str, project: str, run_id: str, body: bytes) -> int:
        return self.ingest_batch(entity, project, run_id, body).held

    def ingest_batch(self, entity: str, project: str, run_id: str, body: bytes) -> Ingested:
        with self._run_lock(entity, project, run_id):  # one batch of a run at a time
            with self._lock:
                row = self._writer.execute(
                    "SELECT rid, held, ingest_state FROM runs "
                    "WHERE entity=? AND project=? AND run_id=?",
                    (entity, project, run_id),
                ).fetchone()
            rid, held, state_text = row if row else (None, 0, None)
            state = RunState.from_json(state_text)
            # decoded without the writer's lock: a huge batch holds back no other run here
            batch = decode_batch(body, held, state)  # raises BadBatch before anything is written
            if batch.empty:
                return Ingested(int(held))
            # the history in chunks of CHUNK_COST, each its own transaction, the writer's lock
            # released between them (a writer waiting for it goes first); the last chunk, the
            # rest and ``held`` in one last transaction (most batches: that one alone). Only
            # that one says the batch is stored: after a kill between chunks the client resends
            # the batch, and writing a chunk's points again changes nothing (points are merged
            # by row ordinal, values replaced).
            chunks = list(_chunks(batch.series))
            for chunk in chunks[:-1]:
                with self._lock, transaction(self._writer):
                    rid = self._run_row(self._writer, rid, entity, project, run_id)
                    self._apply_series(self._writer, rid, chunk)
            batch.series = chunks[-1] if chunks else []  # the last one goes with the rest
            # JSON of the state and summary made before taking the lock (100,000 keys: seconds)
            texts = state.to_json(), _dumps(state.summary.result())
            with self._lock, transaction(self._writer):
                rid = self._run_row(self._writer, rid, entity, project, run_id)
                self._apply(self._writer, rid, batch, *texts, state.runtime)
            return Ingested(batch.held, batch.refused)

    def _run_lock(self, entity: str, project: str, run_id: str) -> threading.Lock:
        key = (entity, project, run_id)
        with self._run_locks_lock:
            lock = self._run_locks.get(key)
            if lock is None:
                lock = self._run_locks[key] = threading.Lock()
        return lock

    @staticmethod
    def _run_row(
        con: sqlite3.Connection, rid: int | None, entity: str, project: str, run_id: str
    ) -> int:
        """The run's ``rid``, creating its row when it has none."""
        if rid is None:
            now = time.time()
            rid = con.execute(
                "INSERT INTO runs (entity, project, run_id, created, updated) "
                "VALUES (?, ?, ?, ?, ?)",
                (entity, project, run_id, now, now),
            ).lastrowid
        assert rid is not None
        return rid

    def _apply_series(
        self, con: sqlite3.Connection, rid: int, series: list[tuple[str, Any]]
    ) -> None:
        for op, arg in series:
            if op == "points":
                for key, points in arg.items():
                    self._add_points(con, rid, key, points)
            elif op == "values":
                con.executemany(
                    "INSERT OR REPLACE INTO other_values VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(rid, *v) for v in arg],
                )
            else:
                self._rewind(con, rid, float(arg))

    def _apply(
        self,
        con: sqlite3.Connection,
        rid: int,
        batch: Batch,
        state: str,
        summary: str,
        runtime: float,
    ) -> None:
        """Write ``batch`` but its history's earlier chunks; ``state`` and ``summary``: the
        run's ``RunState`` and summary as JSON, ``runtime`` its runtime so far."""
        con.executemany(
            "INSERT INTO segments VALUES (?, ?, ?, ?)", [(rid, *seg) for seg in batch.segments]
        )
        sets: dict[str, Any] = {
            "held": batch.held,
            "updated": time.time(),
            "ingest_state": state,
            "summary": summary,
            "runtime": runtime,
        }
        for start in batch.starts:
            meta = {k: v for k, v in start.items() if k not in ("tags", "notes")}
            sets.update(
                name=start.get("name") or start.get("id"),
                grp=start.get("group"),
                job_type=start.get("job_type"),
                tags=_dumps(list(start.get("tags") or [])),
                notes=start.get("notes"),
                state="running",
                meta=_dumps(meta),
                exit=None,
            )
            if not start.get("resumed") and start.get("time"):
                sets["created"] = float(start["time"])
        if batch.config:
            (old,) = con.execute("SELECT config FROM runs WHERE rid=?", (rid,)).fetchone()
            config = json.loads(old)
            config.update(json_safe(batch.config))
            sets["config"] = _dumps(config)
        if batch.metrics:
            (old,) = con.execute("SELECT metrics FROM runs WHERE rid=?", (rid,)).fetchone()
            sets["metrics"] = _dumps(json.loads(old) + batch.metrics)
        if batch.exit is not None:
            sets["state"] = batch.exit.get("state") or "finished"
            sets["exit"] = _dumps(batch.exit)
            if batch.exit.get("runtime") is not None:
                sets["runtime"] = float(batch.exit["runtime"])
        self._apply_series(con, rid, batch.series)
        # every row has a point in the series ROWS (its step), so rewinds are counted right
        found = con.execute("SELECT n FROM series WHERE rid=? AND key=?", (rid, ROWS)).fetchone()
        sets["rows"] = int(found[0]) if found else 0
        assignments = ", ".join(f"{column}=?" for column in sets)
        con.execute(f"UPDATE runs SET {assignments} WHERE rid=?", (*sets.values(), rid))
        if batch.console:
            con.executemany(
                "INSERT OR REPLACE INTO console VALUES (?, ?, ?, ?)",
                [(rid, seq, stream, text) for seq, stream, text in batch.console],
            )
        if batch.stats:
            con.executemany(
                "INSERT OR REPLACE INTO stats VALUES (?, ?, ?)",
                [(rid, seq, _dumps(data)) for seq, data in batch.stats],
            )
        for f in batch.files:
            con.execute(
                "INSERT INTO files (rid, path, type, size) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (rid, path) DO UPDATE SET type=excluded.type, size=excluded.size",
                (rid, str(f["path"]), f.get("type"), f.get("size")),
            )
        if batch.artifacts:
            entity, project, run_id = con.execute(
                "SELECT entity, project, run_id FROM runs WHERE rid=?", (rid,)
            ).fetchone()
            for art in batch.artifacts:
                if not art.get("used"):
                    self._log_artifact(con, entity, project, run_id, art)

    def _log_artifact(
        self, con: sqlite3.Connection, entity: str, project: str, run_id: str, art: dict[str, Any]
    ) -> None:
        name, digest = str(art["name"]), art.get("digest")
        found = con.execute(
            "SELECT version FROM artifacts WHERE entity=? AND project=? AND name=? AND digest=?",
            (entity, project, name, digest),
        ).fetchone()
        if found is None:
            (latest,) = con.execute(
                "SELECT coalesce(max(version), -1) FROM artifacts "
                "WHERE entity=? AND project=? AND name=?",
                (entity, project, name),
            ).fetchone()
            version = int(latest) + 1
            con.execute(
                "INSERT INTO artifacts (entity, project, name, type, version, digest, metadata, "
                "entries, run_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entity,
                    project,
                    name,
                    art.get("type"),
                    version,
                    digest,
                    _dumps(art.get("metadata") or {}),
                    _dumps(art.get("entries") or {}),
                    run_id,
                    time.time(),
                ),
            )
        else:
            version = int(found[0])
        for alias in {"latest", *(art.get("aliases") or [])}:
            con.execute(
                "INSERT OR REPLACE INTO aliases VALUES (?, ?, ?, ?, ?)",
                (entity, project, name, str(alias), version),
            )

    def load_series(
        self, entity: str, project: str, run_id: str, key: str, points: S.Array
    ) -> None:
        """Bulk-load one metric's points (``(FIELDS, n)``, by row ordinal) into a run, creating
        the run: for imports and benchmarks, bypassing run-log decoding."""
        with self._lock:
            con = self._writer
            with transaction(con):
                con.execute(
                    "INSERT OR IGNORE INTO runs (entity, project, run_id, created, updated) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (entity, project, run_id, time.time(), time.time()),
                )
                (rid,) = con.execute(
                    "SELECT rid FROM runs WHERE entity=? AND project=? AND run_id=?",
                    (entity, project, run_id),
                ).fetchone()
                self._add_points(con, int(rid), key, points)

    # --- scalar series -------------------------------------------------------------------------

    def _load_points(self, con: sqlite3.Connection, rid: int, key: str, from_piece: int) -> S.Array:
        rows = con.execute(
            "SELECT data FROM points WHERE rid=? AND key=? AND piece>=? ORDER BY piece",
            (rid, key, from_piece),
        ).fetchall()
        if not rows:
            return np.empty((S.FIELDS, 0))
        return np.concatenate([S.unpack_points(r[0]) for r in rows], axis=1)

    def _write_points(
        self, con: sqlite3.Connection, rid: int, key: str, from_piece: int, points: S.Array
    ) -> None:
        """Replace every piece from ``from_piece`` on with ``points`` (which start there), then
        the overview blocks (levels 2 and 3 of ``BLOCK`` full pieces each) that changed.

        Only full pieces go into the overview: a live run's batches rewrite just the last,
        partial piece, and the overview only when a piece fills (or a rewind or late value
        reaches back); queries add the partial piece's entries themselves (``_entries``)."""
        found = con.execute("SELECT n FROM series WHERE rid=? AND key=?", (rid, key)).fetchone()
        old_full = (int(found[0]) if found else 0) // S.PIECE
        con.execute("DELETE FROM points WHERE rid=? AND key=? AND piece>=?", (rid, key, from_piece))
        con.execute("DELETE FROM pieces WHERE rid=? AND key=? AND piece>=?", (rid, key, from_piece))
        n = points.shape[1]
        for i, start in enumerate(range(0, n, S.PIECE)):
            part = points[:, start : start + S.PIECE]
            m = S.summarize(part)
            bounds = (m.step_min, m.step_max, m.runtime_min, m.runtime_max, m.time_min, m.time_max)
            l1, l2, l3 = m.levels
            con.execute(
                "INSERT INTO points VALUES (?, ?, ?, ?)",
                (rid, key, from_piece + i, S.pack_points(part)),
            )
            con.execute(
                "INSERT INTO pieces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rid, key, from_piece + i, m.n, m.ord_first, *bounds, l3, l2, l1),
            )
        total = from_piece * S.PIECE + n
        last_ord = float(points[S.ORD, -1]) if n else -1.0
        con.execute(
            "INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?)", (rid, key, total, last_ord)
        )
        new_full = total // S.PIECE
        if from_piece >= old_full and new_full == old_full:
            return  # only the partial last piece changed
        first_block = min(from_piece, old_full) // BLOCK
        con.execute(
            "DELETE FROM overview WHERE rid=? AND key=? AND block>=?", (rid, key, first_block)
        )
        # (piece, n, smin, smax, rmin, rmax, tmin, tmax, l3, l2) of the full pieces to cover
        rows = con.execute(
            "SELECT piece, n, smin, smax, rmin, rmax, tmin, tmax, l3, l2 FROM pieces "
            "WHERE rid=? AND key=? AND piece>=? AND piece<? ORDER BY piece",
            (rid, key, first_block * BLOCK, new_full),
        ).fetchall()
        blocks: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            blocks.setdefault(int(row[0]) // BLOCK, []).append(row)
        for block, members in blocks.items():
            stats = (
                sum(int(r[1]) for r in members),
                *(min(r[c] for r in members) if c % 2 == 0 else max(r[c] for r in members)
                  for c in range(2, 8)),
            )  # fmt: skip
            for level, column in ((3, 8), (2, 9)):
                con.execute(
                    "INSERT INTO overview VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rid, key, level, block, *stats, b"".join(r[column] for r in members)),
                )

    def _add_points(self, con: sqlite3.Connection, rid: int, key: str, new: S.Array) -> None:
        row = con.execute(
            "SELECT n, last_ord FROM series WHERE rid=? AND key=?", (rid, key)
        ).fetchone()
        n, last_ord = (0, -1.0) if row is None else (int(row[0]), float(row[1]))
        if new[S.ORD, 0] > last_ord:  # the usual case: new rows after the old ones
            first = n // S.PIECE
            old = self._load_points(con, rid, key, first) if n % S.PIECE else None
            merged = new if old is None else np.concatenate([old, new], axis=1)
        else:  # a late value (PATCH) or the same row again: merge by row ordinal
            found = con.execute(
                "SELECT max(piece) FROM pieces WHERE rid=? AND key=? AND ord_first<=?",
                (rid, key, float(new[S.ORD].min())),
            ).fetchone()
            first = int(found[0] or 0)
            merged = S.merge_points(self._load_points(con, rid, key, first), new)
        self._write_points(con, rid, key, first, merged)

    def _rewind(self, con: sqlite3.Connection, rid: int, step: float) -> None:
        keys = con.execute("SELECT key, n FROM series WHERE rid=?", (rid,)).fetchall()
        for key, n in keys:
            piece = (int(n) - 1) // S.PIECE
            while piece >= 0:
                points = self._load_points(con, rid, key, piece)
                cut = S.rewind_cut(points[S.STEP], step)
                if cut == points.shape[1]:
                    break  # nothing at or past the rewound step here
                if cut > 0 or piece == 0:
                    if key == ROWS:  # the rows that go are those from this one on
                        con.execute(
                            "DELETE FROM other_values WHERE rid=? AND ordinal>=?",
                            (rid, int(points[S.ORD, cut])),
                        )
                    self._write_points(con, rid, key, piece, points[:, :cut])
                    break
                piece -= 1

    # --- reads ---------------------------------------------------------------------------------

    @staticmethod
    def _find_run(
        con: sqlite3.Connection, columns: str, entity: str, project: str, run_id: str
    ) -> Any:
        """The run's row (``columns``, a constant of this module), or NotFound."""
        row = con.execute(
            f"SELECT {columns} FROM runs WHERE entity=? AND project=? AND run_id=?",
            (entity, project, run_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"run {entity}/{project}/{run_id} not found")
        return row

    def _rid(self, entity: str, project: str, run_id: str) -> int:
        return int(self._find_run(self._read, "rid", entity, project, run_id)[0])

    def held(self, entity: str, project: str, run_id: str) -> int:
        row = self._read.execute(
            "SELECT held FROM runs WHERE entity=? AND project=? AND run_id=?",
            (entity, project, run_id),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def heartbeat(self, entity: str, project: str, run_id: str) -> None:
        with self._lock:
            found = self._writer.execute(
                "UPDATE runs SET updated=? WHERE entity=? AND project=? AND run_id=?",
                (time.time(), entity, project, run_id),
            ).rowcount
        if not found:
            raise NotFound(f"run {entity}/{project}/{run_id} not found")

    def mark_crashed(self, entity: str, project: str, run_id: str, last_seq: int) -> str:
        with self._lock:
            row = self._find_run(self._writer, "held, state", entity, project, run_id)
            held, state = int(row[0]), str(row[1])
            if held != last_seq:
                raise Conflict(f"the server holds records up to {held}, not {last_seq}")
            if state == "running":
                state = "crashed"
                self._writer.execute(
                    "UPDATE runs SET state=?, updated=? WHERE entity=? AND project=? AND run_id=?",
                    (state, time.time(), entity, project, run_id),
                )
            return state

    def entities(self, only: str | None) -> list[dict[str, Any]]:
        rows = self._read.execute(
            "SELECT entity, count(DISTINCT project), count(*) FROM runs "
            "WHERE entity NOT LIKE 'anon-%' GROUP BY entity ORDER BY entity"
        ).fetchall()
        return [
            {"name": e, "projects": p, "runs": r} for e, p, r in rows if only is None or e == only
        ]

    def projects(self, entity: str) -> list[dict[str, Any]]:
        rows = self._read.execute(
            "SELECT project, count(*), max(updated) FROM runs WHERE entity=? "
            "GROUP BY project ORDER BY project",
            (entity,),
        ).fetchall()
        return [{"name": _text(p), "runs": n, "updated": _num(u)} for p, n, u in rows]

    def _run_dict(self, row: sqlite3.Row | tuple[Any, ...], full: bool) -> dict[str, Any]:
        (run_id, name, grp, job_type, tags, notes, state, created, updated, runtime, held, rows,
         config, summary) = row[:14]  # fmt: skip
        updated = _num(updated)
        out: dict[str, Any] = {
            "id": _text(run_id),
            "name": _text(name),
            "group": _text(grp),
            "job_type": _text(job_type),
            "tags": [t for t in _loads(tags, []) if isinstance(t, str)],
            "notes": _text(notes),
            "state": _text(state),
            "created": _num(created),
            "updated": updated,
            # running, yet nothing heard for STALE_AFTER s: its client may be gone (a kill -9);
            # `fulmen sync` of its folder settles it (crashed), new records clear it
            "stale": state == "running" and time.time() - (updated or 0) > STALE_AFTER,
            "runtime": _num(runtime),
            "held": _num(held),
            "rows": _num(rows),
            "config": _loads(config, {}),
            "summary": _loads(summary, {}),
        }
        if full:
            meta, exit_, metrics = row[14:17]
            out["metadata"] = _loads(meta, {})
            out["exit"] = _loads(exit_, {}) if exit_ is not None else None
            out["metrics"] = _loads(metrics, [])
        return out

    _RUN_COLUMNS = (
        "run_id, name, grp, job_type, tags, notes, state, created, updated, runtime, held, rows, "
        "config, summary"
    )

    def _filter(self, f: Filter) -> tuple[str, list[Any]]:
        """One condition of the runs query as SQL and its parameters."""
        if f.op not in OPS:
            raise ValueError(f"filter on {f.field!r}: op {f.op!r}, use one of {', '.join(OPS)}")
        column, _, path = f.field.partition(".")
        value = int(f.value) if isinstance(f.value, bool) else f.value
        if f.field == "tags":
            each = f"FROM json_each({_valid('runs.tags')})"
            if f.op in ("=", "!="):
                negate = "NOT " if f.op == "!=" else ""
                return f"{negate}EXISTS (SELECT 1 {each} WHERE value=?)", [value]
            if f.op == "~":
                return f"EXISTS (SELECT 1 {each} WHERE value LIKE ? ESCAPE '\\')", [_like(value)]
            raise ValueError(f"filter on tags: op {f.op!r}, use = (has the tag), != or ~")
        if f.field in RUN_FIELDS:
            sql, params = FIELD_COLUMNS.get(f.field, f.field), []
        elif column in ("config", "summary") and path:
            sql, params = f"json_extract({_valid(column)}, ?)", [json_path(path)]
        else:
            fields = ", ".join(RUN_FIELDS)
            raise ValueError(f"filter on {f.field!r}: use config.<key>, summary.<key> or {fields}")
        if value is None:
            if f.op not in ("=", "!="):
                raise ValueError(f"filter on {f.field!r}: compare with null by = or != only")
            return f"{sql} IS {'NOT ' if f.op == '!=' else ''}NULL", params
        if f.op == "~":
            return f"{sql} LIKE ? ESCAPE '\\'", [*params, _like(value)]
        return f"{sql} {OPS[f.op]} ?", [*params, value]

    def runs(self, entity: str, project: str, query: RunQuery) -> RunPage:
        where = ["entity=?", "project=?"]
        params: list[Any] = [entity, project]
        if query.states:
            where.append(f"state IN ({', '.join('?' * len(query.states))})")
            params += query.states
        for tag in query.tags:
            where.append(f"EXISTS (SELECT 1 FROM json_each({_valid('runs.tags')}) WHERE value=?)")
            params.append(tag)
        if query.group is not None:
            where.append("grp=?")
            params.append(query.group)
        if query.search:
            where.append("(name LIKE ? ESCAPE '\\' OR run_id LIKE ? ESCAPE '\\')")
            params += [_like(query.search)] * 2
        for f in query.filters:
            sql, more = self._filter(f)
            where.append(sql)
            params += more
        descending = query.sort.startswith("-")
        sort = query.sort.lstrip("-+")
        if sort in SORT_COLUMNS:
            order = FIELD_COLUMNS.get(sort, sort)
            order_params: list[Any] = []
        else:
            column, _, path = sort.partition(".")
            if column not in ("config", "summary") or not path:
                raise ValueError(
                    f"sort {query.sort!r}: use one of {', '.join(sorted(SORT_COLUMNS))}, "
                    "config.<key> or summary.<key>, with '-' for descending"
                )
            order = f"json_extract({_valid(column)}, ?)"
            order_params = [json_path(path)]
        clause = " AND ".join(where)
        direction = "DESC" if descending else "ASC"
        con = self._read
        (total,) = con.execute(f"SELECT count(*) FROM runs WHERE {clause}", params).fetchone()
        rows = con.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE {clause} "
            f"ORDER BY {order} IS NULL, {order} {direction}, rid {direction} LIMIT ? OFFSET ?",
            [*params, *order_params, *order_params, query.limit, query.offset],
        ).fetchall()
        runs = [self._run_dict(r, full=False) for r in rows]
        if query.fields is not None:
            _keep_fields(runs, query.fields)
        return RunPage(int(total), runs)

    def columns(self, entity: str, project: str) -> dict[str, Any]:
        """Every top-level config and summary key of the project's runs, and every history key,
        each with the number of runs that have it; and under ``paths`` every leaf path of config
        and summary (``model.depth``: the runs table's column picker)."""
        con = self._read
        out: dict[str, Any] = {}
        docs: dict[str, list[Any]] = {"config": [], "summary": []}
        for config, summary in con.execute(
            "SELECT config, summary FROM runs WHERE entity=? AND project=?", (entity, project)
        ):
            docs["config"].append(_loads(config, {}))
            docs["summary"].append(_loads(summary, {}))
        for column, values in docs.items():
            counts: collections.Counter[str] = collections.Counter()
            for value in values:
                counts.update(value.keys())
            out[column] = dict(sorted(counts.items()))
        out["paths"] = {column: column_paths(iter(values)) for column, values in docs.items()}
        rows = con.execute(
            "SELECT key, count(*) FROM series WHERE rid IN "
            "(SELECT rid FROM runs WHERE entity=? AND project=?) GROUP BY key ORDER BY key",
            (entity, project),
        ).fetchall()
        out["history"] = {str(k): int(n) for k, n in rows}
        return out

    def run(self, entity: str, project: str, run_id: str) -> dict[str, Any]:
        columns = f"{self._RUN_COLUMNS}, meta, exit, metrics"
        row = self._find_run(self._read, columns, entity, project, run_id)
        out = self._run_dict(row, full=True)
        keys = self._read.execute(
            "SELECT key, n FROM series WHERE rid=(SELECT rid FROM runs "
            "WHERE entity=? AND project=? AND run_id=?) ORDER BY key",
            (entity, project, run_id),
        ).fetchall()
        out["history_keys"] = {k: n for k, n in keys}  # noqa: C416
        return out

    def _entries(
        self, rid: int, key: str, level: int, column: str | None, lo: float, hi: float
    ) -> S.Array:
        con = self._read
        bounds = "" if column is None else f" AND {column}max>=? AND {column}min<=?"
        params: list[Any] = [rid, key] + ([] if column is None else [lo, hi])
        if level == 0:
            rows = con.execute(
                "SELECT p.data FROM points p JOIN pieces q USING (rid, key, piece) "
                f"WHERE p.rid=? AND p.key=?{bounds.replace(' AND ', ' AND q.')} ORDER BY p.piece",
                params,
            ).fetchall()
            if not rows:
                return np.empty((0, S.ENTRY_FIELDS))
            return S.entries_of(np.concatenate([S.unpack_points(r[0]) for r in rows], axis=1), 1)
        if level == 1:
            sql = f"SELECT l1 FROM pieces WHERE rid=? AND key=?{bounds} ORDER BY piece"
            rows = con.execute(sql, params).fetchall()
        else:  # levels 2 and 3: one overview row per BLOCK full pieces, then the partial piece
            sql = f"SELECT data FROM overview WHERE rid=? AND key=? AND level={int(level)}{bounds} "
            rows = con.execute(sql + "ORDER BY block", params).fetchall()
            rows += con.execute(
                f"SELECT l{int(level)} FROM pieces WHERE rid=? AND key=?{bounds} AND n<? "
                "AND piece=(SELECT max(piece) FROM pieces WHERE rid=? AND key=?)",
                [*params, S.PIECE, rid, key],
            ).fetchall()
        if not rows:
            return np.empty((0, S.ENTRY_FIELDS))
        return S.unpack_entries(b"".join(r[0] for r in rows))

    def history(self, entity: str, project: str, query: HistoryQuery) -> list[dict[str, Any]]:
        con = self._read
        rids = {run_id: self._rid(entity, project, run_id) for run_id in query.runs}
        column = {"_step": "s", "_runtime": "r", "_timestamp": "t"}.get(query.x)
        lo = -np.inf if query.lo is None else query.lo
        hi = np.inf if query.hi is None else query.hi
        series: list[tuple[str, str, S.Array, S.Array]] = []
        for run_id, rid in rids.items():
            for key in query.keys:
                if column is None or (query.lo is None and query.hi is None):
                    found = con.execute(
                        "SELECT n FROM series WHERE rid=? AND key=?", (rid, key)
                    ).fetchone()
                    points = int(found[0]) if found else 0
                else:
                    # points in range, assuming each block's (and the partial last
                    # piece's) points spread evenly over its x range
                    c = column
                    share = (
                        f"n * (min(?, {c}max) - max(?, {c}min) + 1e-9) / ({c}max - {c}min + 1e-9)"
                    )
                    within = f"rid=? AND key=? AND {c}max>=? AND {c}min<=?"
                    found = con.execute(
                        f"SELECT sum(share) FROM (SELECT {share} AS share FROM overview "
                        f"WHERE {within} AND level=3 UNION ALL SELECT {share} FROM pieces "
                        f"WHERE {within} AND n<? AND piece=(SELECT max(piece) FROM pieces "
                        "WHERE rid=? AND key=?))",
                        (hi, lo, rid, key, lo, hi, hi, lo, rid, key, lo, hi, S.PIECE, rid, key),
                    ).fetchone()
                    points = 0 if found[0] is None else max(1, int(np.ceil(found[0])))
                if points == 0:
                    series.append((run_id, key, np.empty((0, S.ENTRY_FIELDS)), np.empty(0)))
                    continue
                level = S.level_for(points, query.buckets)
                entries = self._entries(rid, key, level, column, lo, hi)
                if column is not None:
                    x = entries[:, S.AXES[query.x]]
                else:  # a step metric as the x-axis: its own entries give x by row ordinal
                    x_entries = self._entries(rid, query.x, level, None, lo, hi)
                    x = S.x_from_step_metric(entries, x_entries)
                series.append((run_id, key, entries, x))
        finite = [x[np.isfinite(x)] for _, _, _, x in series]
        finite = [x for x in finite if len(x)]
        if query.lo is None:
            lo = min((float(x.min()) for x in finite), default=0.0)
        if query.hi is None:
            hi = max((float(x.max()) for x in finite), default=0.0)
        out = []
        for run_id, key, entries, x in series:
            b = S.bucketize(entries, x, lo, hi, query.buckets)
            out.append(
                {
                    "run": run_id,
                    "key": key,
                    "x": b.x,
                    "min": b.min,
                    "max": b.max,
                    "last": b.last,
                    "count": b.count,
                }
            )
        return out

    def frames(self, entity: str, project: str, run_id: str) -> Iterator[bytes]:
        rid = self._rid(entity, project, run_id)
        last = 0
        while True:  # one segment at a time: an export never holds the whole run in memory
            row = self._read.execute(
                "SELECT first_seq, data FROM segments WHERE rid=? AND first_seq>? "
                "ORDER BY first_seq LIMIT 1",
                (rid, last),
            ).fetchone()
            if row is None:
                return
            last = int(row[0])
            yield bytes(row[1])

    def console(
        self, entity: str, project: str, run_id: str, after: int, limit: int
    ) -> list[dict[str, Any]]:
        rid = self._rid(entity, project, run_id)
        rows = self._read.execute(
            "SELECT seq, stream, text FROM console WHERE rid=? AND seq>? ORDER BY seq LIMIT ?",
            (rid, after, limit),
        ).fetchall()
        return [{"seq": s, "stream": st, "text": t} for s, st, t in rows]

    def system(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]:
        rid = self._rid(entity, project, run_id)
        rows = self._read.execute(
            "SELECT seq, data FROM stats WHERE rid=? ORDER BY seq", (rid,)
        ).fetchall()
        return [{**_loads(d, {}), "seq": s} for s, d in rows]

    def files(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]:
        rid = self._rid(entity, project, run_id)
        rows = self._read.execute(
            "SELECT path, type, size, digest FROM files WHERE rid=? ORDER BY path", (rid,)
        ).fetchall()
        return [
            {
                "path": _text(p),
                "type": _text(t),
                "size": _num(s),
                "digest": _text(d),
                "uploaded": d is not None,
            }
            for p, t, s, d in rows
        ]

    def file_digest(self, entity: str, project: str, run_id: str, path: str) -> str:
        rid = self._rid(entity, project, run_id)
        row = self._read.execute(
            "SELECT digest FROM files WHERE rid=? AND path=?", (rid, path)
        ).fetchone()
        if row is None or row[0] is None:
            raise NotFound(f"file {path!r} of run {run_id} not found")
        return str(row[0])

    def put_file(
        self, entity: str, project: str, run_id: str, path: str, digest: str, size: int
    ) -> None:
        with self._lock:
            row = self._find_run(self._writer, "rid", entity, project, run_id)
            # both or neither: the file is listed only with its blob
            with transaction(self._writer):
                self._writer.execute(
                    "INSERT INTO files (rid, path, size, digest) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (rid, path) DO UPDATE SET size=excluded.size, "
                    "digest=excluded.digest",
                    (row[0], path, size, digest),
                )
                self._writer.execute(
                    "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)", (entity, digest, size)
                )

    def missing_blobs(self, entity: str, digests: list[str]) -> list[str]:
        con = self._read
        return [
            d
            for d in digests
            if con.execute(
                "SELECT 1 FROM blobs WHERE entity=? AND digest=?", (entity, d)
            ).fetchone()
            is None
        ]

    def add_blob(self, entity: str, digest: str, size: int) -> None:
        with self._lock:
            self._writer.execute(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)", (entity, digest, size)
            )

    def has_blob(self, entity: str, digest: str) -> bool:
        return not self.missing_blobs(entity, [digest])

    def blob_bytes(self, entity: str) -> int:
        (total,) = self._read.execute(
            "SELECT coalesce(sum(size), 0) FROM blobs WHERE entity=?", (entity,)
        ).fetchone()
        return int(total)

    def artifact_collections(self, entity: str, project: str) -> list[dict[str, Any]]:
        rows = self._read.execute(
            "SELECT name, type, count(*), max(created) FROM artifacts "
            "WHERE entity=? AND project=? GROUP BY name ORDER BY name",
            (entity, project),
        ).fetchall()
        return [
            {"name": _text(n), "type": _text(t), "versions": c, "updated": _num(u)}
            for n, t, c, u in rows
        ]

    def _aliases(self, entity: str, project: str, name: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for alias, version in self._read.execute(
            "SELECT alias, version FROM aliases WHERE entity=? AND project=? AND name=? "
            "ORDER BY alias",
            (entity, project, name),
        ):
            out.setdefault(version, []).append(_text(alias) or "")
        return out

    def artifact_versions(self, entity: str, project: str, name: str) -> list[dict[str, Any]]:
        rows = self._read.execute(
            "SELECT version, type, digest, run_id, created, metadata FROM artifacts "
            "WHERE entity=? AND project=? AND name=? ORDER BY version",
            (entity, project, name),
        ).fetchall()
        if not rows:
            raise NotFound(f"artifact {name!r} not found in {entity}/{project}")
        aliases = self._aliases(entity, project, name)
        return [
            {
                "name": name,
                "version": f"v{v}",
                "type": _text(t),
                "digest": _text(d),
                "run": _text(r),
                "created": _num(c),
                "metadata": _loads(m, {}),
                "aliases": aliases.get(v, []),
            }
            for v, t, d, r, c, m in rows
        ]

    def values(
        self, entity: str, project: str, run_id: str, key: str, lo: float, hi: float, limit: int
    ) -> list[dict[str, Any]]:
        rid = self._rid(entity, project, run_id)
        rows = self._read.execute(
            "SELECT step, runtime, timestamp, value FROM other_values "
            "WHERE rid=? AND key=? AND step>=? AND step<=? ORDER BY ordinal LIMIT ?",
            (rid, key, lo, hi, limit),
        ).fetchall()
        return [
            {"_step": _num(st), "_runtime": _num(rt), "_timestamp": _num(ts), "value": _loads(v)}
            for st, rt, ts, v in rows
        ]

    def run_artifacts(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]:
        self._rid(entity, project, run_id)  # 404 for an unknown run
        rows = self._read.execute(
            "SELECT name, version, type, digest, created FROM artifacts "
            "WHERE entity=? AND project=? AND run_id=? ORDER BY name, version",
            (entity, project, run_id),
        ).fetchall()
        return [
            {
                "name": _text(n),
                "version": f"v{v}",
                "type": _text(t),
                "digest": _text(d),
                "created": _num(c),
                "aliases": self._aliases(entity, project, n).get(v, []),
            }
            for n, v, t, d, c in rows
        ]

    def artifact(self, entity: str, project: str, name: str, version: str) -> dict[str, Any]:
        con = self._read
        if version.startswith("v") and version[1:].isdigit():
            number: int | None = int(version[1:])
        else:
            found = con.execute(
                "SELECT version FROM aliases WHERE entity=? AND project=? AND name=? AND alias=?",
                (entity, project, name, version),
            ).fetchone()
            number = None if found is None else int(found[0])
        row = None
        if number is not None:
            row = con.execute(
                "SELECT type, digest, run_id, created, metadata, entries FROM artifacts "
                "WHERE entity=? AND project=? AND name=? AND version=?",
                (entity, project, name, number),
            ).fetchone()
        if row is None or number is None:
            raise NotFound(f"artifact {name}:{version} not found in {entity}/{project}")
        t, d, r, c, m, e = row
        return {
            "name": name,
            "version": f"v{number}",
            "type": _text(t),
            "digest": _text(d),
            "run": _text(r),
            "created": _num(c),
            "metadata": _loads(m, {}),
            "aliases": self._aliases(entity, project, name).get(number, []),
            "entries": _loads(e),
        }

    def set_manifest(
        self,
        entity: str,
        project: str,
        name: str,
        digest: str,
        entries: dict[str, Any],
        metadata: dict[str, Any],
    ) -> str:
        with self._lock:
            found = self._writer.execute(
                "SELECT version FROM artifacts WHERE entity=? AND project=? AND name=? AND digest=?",  # noqa: E501
                (entity, project, name, digest),
            ).fetchone()
            if found is None:
                raise NotFound(f"no version of artifact {name!r} has digest {digest}")
            self._writer.execute(
                "UPDATE artifacts SET entries=?, metadata=? "
                "WHERE entity=? AND project=? AND name=? AND digest=?",
                (_dumps(entries), _dumps(metadata), entity, project, name, digest),
            )
            return f"v{found[0]}"

    # --- keys and anonymous spaces -------------------------------------------------------------

    # --- reports (their SQL: _store_reports) -----------------------------------------------------

    def reports(self, entity: str, project: str) -> list[dict[str, Any]]:
        return self._reports.list(self._read, entity, project)

    def report(self, entity: str, project: str, report_id: str) -> dict[str, Any]:
        return self._reports.get(self._read, entity, project, report_id)

    def report_exists(self, entity: str, project: str, report_id: str) -> bool:
        return self._reports.exists(self._read, entity, project, report_id)

    def save_report(
        self, entity: str, project: str, report: dict[str, Any], snapshots: dict[str, Any]
    ) -> None:
        with self._lock, transaction(self._writer):
            self._reports.save(self._writer, entity, project, report, snapshots, time.time())

    def report_snapshots(self, entity: str, project: str, report_id: str) -> dict[str, Any]:
        return self._reports.snapshots(self._read, entity, project, report_id)

    def delete_report(self, entity: str, project: str, report_id: str) -> None:
        with self._lock, transaction(self._writer):
            found = self._reports.delete(self._writer, entity, project, report_id)
        if not found:
            raise NotFound(f"report {entity}/{project}/{report_id} not found")

    def create_key(self, entity: str) -> str:
        key = "fulmen_" + secrets.token_urlsafe(32)
        with self._lock:
            self._writer.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?)", (_hash(key), entity, time.time())
            )
        return key

    def entity_for_key(self, key: str) -> str | None:
        row = self._read.execute(
            "SELECT entity FROM api_keys WHERE hash=?", (_hash(key),)
        ).fetchone()
        return None if row is None else str(row[0])

    def has_keys(self) -> bool:
        return self._read.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    def create_anonymous(self) -> str:
        token = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        with self._lock:
            self._writer.execute("INSERT INTO anonymous VALUES (?, ?)", (_hash(token), time.time()))
        return ANON_PREFIX + token

    # --- workspaces (their SQL: _store_workspaces) ----------------------------------------------

    _workspaces = WorkspaceSQL("?")

    def workspace(self, entity: str, project: str, owner: str) -> dict[str, Any] | None:
        return self._workspaces.get(self._read, entity, project, owner)

    def put_workspace(self, entity: str, project: str, owner: str, layout: dict[str, Any]) -> float:
        with self._lock, transaction(self._writer):
            return self._workspaces.put(self._writer, entity, project, owner, layout)

    def delete_workspace(self, entity: str, project: str, owner: str) -> None:
        with self._lock, transaction(self._writer):
            self._workspaces.delete(self._writer, entity, project, owner)

    def anonymous_exists(self, entity: str) -> bool:
        if not entity.startswith(ANON_PREFIX):
            return False
        token = entity.removeprefix(ANON_PREFIX)
        row = self._read.execute("SELECT 1 FROM anonymous WHERE hash=?", (_hash(token),)).fetchone()
        return row is not None
