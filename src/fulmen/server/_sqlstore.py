"""The store on a SQL database, whatever the engine: every query the server makes, written once.

``SqlStore`` implements ``store.Store`` over an ``Engine``: ``_sqlite.SqliteEngine`` (one SQLite
file, the embedded default) or ``_postgres.PostgresEngine`` (PostgreSQL, which several server
processes share). With the engines, the only modules of fulmen with SQL in them (which is why this
one is long: every query is here, and nowhere else).

The SQL here is what both engines speak: ``?`` placeholders (the PostgreSQL engine rewrites them),
``INSERT ... ON CONFLICT``, ``RETURNING``. Where they differ the engine's ``Dialect`` writes the
SQL: paths into JSON (SQLite's ``json_extract`` on text, PostgreSQL's ``#>`` on jsonb), the
two-argument minimum and maximum, a LIKE that ignores case, a row lock.

Who waits for whom is the engine's too (``Engine.hold_run``, ``Engine.write``, ``Engine.lock``):
SQLite has one writer under one in-process lock, and one lock per run being ingested; PostgreSQL
has many writers in many processes, and ingest holds the run's row (``SELECT ... FOR UPDATE``)
from reading ``held`` to its commit, so two processes ingesting one run take turns and the second
sees what the first held. With one writer a big batch's history is written in chunks, each its own
transaction (``Engine.chunked``: a writer waiting for the lock goes between them), and everything
else with ``held`` in one last transaction; so after a kill -9 ``held`` still says which batches are
whole (the chunks of a batch not yet held are written again, to the same effect, when it is
resent). PostgreSQL writes a batch in one transaction: it keeps no one else waiting.

Tables: ``runs`` (one row per run with config, summary and metadata as JSON, the run's ingest state
and ``held``), ``segments`` (the accepted frames verbatim, for export), ``series`` / ``pieces`` /
``points`` / ``overview`` (scalar history, see ``_series``), ``other_values`` (strings, media,
histograms), ``console``, ``stats``, ``files``, ``artifacts`` and ``aliases``, ``blobs`` (which
entity may read which digest), ``api_keys`` (SHA-256 hashes only) and ``anonymous`` (hashes of the
anonymous spaces' tokens). Their statements, per engine: ``_migrations``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from fulmen.server import _series as S
from fulmen.server._ingest import ROWS, Batch, RunState, decode_batch, json_safe
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
    column_paths,
)
from fulmen.sweep._sql import Connections

SORT_COLUMNS = {"created", "updated", "name", "state", "runtime", "rows", "run_id", "id", "group",
                "job_type"}  # fmt: skip
FIELD_COLUMNS = {"id": "run_id", "group": "grp"}  # RUN_FIELDS names that are not the column's
OPS = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "~": "LIKE"}
ANON_PREFIX = "anon-"
STALE_AFTER = 300.0  # seconds without records or heartbeats before a running run is "stale"
PAGE_CHUNK = 500  # rids per statement when a runs page reads its rows
KEPT_COLUMNS = 32  # projects whose columns() answer a store keeps (see SqlStore.columns)
BLOCK = 64  # pieces per overview block: a chart over 1M points reads 4 rows per series


class Cursor(Protocol):
    """What a statement answers (sqlite3's cursor, psycopg's)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the store's SQL runs on: a sqlite3 connection, or ``_postgres.PgConnection``."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


class Dialect(Protocol):
    """The SQL where the engines differ."""

    least: str  # the smaller of two values: min(a, b) in SQLite, LEAST(a, b) in PostgreSQL
    greatest: str
    ilike: str  # LIKE ignoring case (SQLite's LIKE already does for ASCII)
    for_update: str  # after a SELECT: lock the rows read until the transaction ends

    def json_value(self, column: str, path: str) -> tuple[str, list[Any]]:
        """SQL for the value at ``path`` (``a.b``) in the JSON ``column`` of ``runs``, NULL where
        it is missing or JSON null, comparable with ``json_param``; and its parameters."""
        ...

    def json_param(self, value: Any) -> tuple[str, Any]:
        """The placeholder SQL and the parameter that compare a JSON value with ``json_value``."""
        ...

    def json_text(self, column: str, path: str) -> tuple[str, list[Any]]:
        """SQL for the value at ``path`` as text (a string as it is, a number in digits), for
        a LIKE; and its parameters."""
        ...

    def has_tag(self) -> str:
        """SQL, with one ``?`` (the tag), true when ``runs.tags`` holds the tag."""
        ...

    def tag_like(self) -> str:
        """SQL, with one ``?`` (a LIKE pattern, ``ESCAPE '\\'``), true when a tag of
        ``runs.tags`` matches it, ignoring case."""
        ...

    def object_keys(self, column: str) -> str:
        """A FROM item with a column ``key``: the top-level keys of ``runs.<column>``."""
        ...


HeldRun = tuple[int | None, int, str | None]  # a run's rid (None: no row yet), held, ingest state


class Engine(Protocol):
    """A database the store runs on: its connections, transactions and locks, its dialect."""

    name: str  # "sqlite" or "postgresql": the key of its statements in ``_migrations``
    where: str  # the database as messages name it (a path; a URL without its password)
    version: int  # the schema version it is at (``_migrations``)
    chunked: bool  # a big batch's history goes in chunks of CHUNK_COST, each a transaction
    dialect: Dialect

    def read(self) -> AbstractContextManager[Connection]:
        """A connection to read with (no transaction: each statement sees what is committed)."""
        ...

    def snapshot(self) -> AbstractContextManager[Connection]:
        """A connection in one read-only transaction: every statement sees the same snapshot."""
        ...

    def write(self) -> AbstractContextManager[Connection]:
        """One write transaction: committed at the end, rolled back on any error (raised as it
        was; a full disk as ``StoreFull``, a database out of reach as ``StoreUnavailable``)."""
        ...

    def hold_run(self, entity: str, project: str, run_id: str) -> AbstractContextManager[HeldRun]:
        """The run's row as ingest needs it, with no other ingest of the run until the block
        ends; ``write()`` inside the block writes as this ingest."""
        ...

    def lock(self, con: Connection, key: str) -> None:
        """No other writer holds ``key`` until ``con``'s transaction ends (one writer: no-op)."""
        ...

    # copying a whole store (``_migrate_store``): every table, row by row

    def tables(self) -> list[str]:
        """The store's tables, by name (not the engine's own, nor its version's)."""
        ...

    def scan(self, table: str) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
        """Every row of ``table``, in batches, each with the column names (streamed: the table
        is never all in memory)."""
        ...

    def load_rows(
        self, con: Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]
    ) -> int:
        """Insert ``rows`` (as ``scan`` gives them, from either engine) into ``table`` in the
        write transaction ``con``, made what this engine holds; the number of values that had to
        be changed for it (text this engine cannot hold, JSON that is not JSON)."""
        ...

    def close(self) -> None: ...


def _copy_columns(columns: dict[str, Any]) -> dict[str, Any]:
    return {k: {c: dict(p) for c, p in v.items()} if k == "paths" else dict(v)
            for k, v in columns.items()}  # fmt: skip


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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


def _keep_fields(runs: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    for column in ("config", "summary"):
        paths = [f.split(".")[1:] for f in fields if f.split(".")[0] == column]
        for run in runs:
            run[column] = _pick(run[column], paths)


def _like(value: Any) -> str:
    """A LIKE pattern matching ``value`` anywhere, its wildcards escaped (``ESCAPE '\\'``)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _is_null(f: Filter, sql: str, params: list[Any]) -> tuple[str, list[Any]]:
    """``f`` (a comparison with null) on the value ``sql`` as SQL and its parameters."""
    if f.op not in ("=", "!="):
        raise ValueError(f"filter on {f.field!r}: compare with null by = or != only")
    return f"{sql} IS {'NOT ' if f.op == '!=' else ''}NULL", params


def _dumps(value: Any) -> str:
    return json.dumps(json_safe(value), separators=(",", ":"), default=str)


def field_path(dotted: str) -> list[str]:
    """``a.b`` -> ``["a", "b"]``; names are validated, yet no quote or backslash gets through."""
    parts = dotted.split(".")
    if any(not p or '"' in p or "\\" in p for p in parts):
        raise ValueError(f"bad field path {dotted!r}")
    return parts


# Reading: a stored value is shown whatever it is. Ingest writes only valid values, but a store
# from an older server, a bug or a hand edit may hold anything (SQLite columns take any type), and
# one such value must not fail every page that lists the run: each is read as what its column
# should hold, or None (or the column's empty value) when it is not.


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


_RUN_COLUMNS = (
    "run_id, name, grp, job_type, tags, notes, state, created, updated, runtime, held, rows, "
    "config, summary"
)


def _charts(
    query: HistoryQuery,
    runs: list[str],
    rids: dict[str, int],
    entries: dict[tuple[int, str], S.Array],
    x_entries: dict[tuple[int, str], S.Array],
    column: str | None,
) -> list[dict[str, Any]]:
    """The history answer: each series' entries put in ``query.buckets`` buckets over the range
    asked for, or else over what all the series span."""
    lo = -np.inf if query.lo is None else query.lo
    hi = np.inf if query.hi is None else query.hi
    series: list[tuple[str, str, S.Array, S.Array]] = []
    for run_id in runs:
        for key in query.keys:
            pair = (rids[run_id], key)
            if pair not in entries:
                series.append((run_id, key, np.empty((0, S.ENTRY_FIELDS)), np.empty(0)))
            elif column is not None:
                series.append((run_id, key, entries[pair], entries[pair][:, S.AXES[query.x]]))
            else:  # the step metric's value at (or before) each entry's first row
                x = S.x_from_step_metric(entries[pair], x_entries[pair])
                series.append((run_id, key, entries[pair], x))
    finite = [x[np.isfinite(x)] for _, _, _, x in series]
    finite = [x for x in finite if len(x)]
    if query.lo is None:
        lo = min((float(x.min()) for x in finite), default=0.0)
    if query.hi is None:
        hi = max((float(x.max()) for x in finite), default=0.0)
    chart = S.bucketize_many([(e, x) for _, _, e, x in series], lo, hi, query.buckets)
    return [
        {"run": run_id, "key": key, "x": b.x, "min": b.min, "max": b.max, "last": b.last,
         "count": b.count}
        for (run_id, key, _, _), b in zip(series, chart, strict=True)
    ]  # fmt: skip


def _unpacked(level: int, chunks: list[bytes], partial: bytes | None) -> S.Array:
    """The entries of one series from its stored rows (and its partial last piece's: at level
    4, its level-2 entries, paired here)."""
    if level == 4 and partial is not None:
        chunks.append(S.pack_entries(S.coarser(S.unpack_entries(partial), 2)))
    elif partial is not None:
        chunks.append(partial)
    if level == 0:
        return S.entries_of(np.concatenate([S.unpack_points(c) for c in chunks], axis=1), 1)
    return S.unpack_entries(b"".join(chunks))


class SqlStore:
    """The ``Store`` on ``engine`` (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.version = engine.version
        self._reports = ReportSql("qmark")  # (the PostgreSQL engine rewrites ? itself)
        self._workspaces = WorkspaceSQL("?")
        # columns() of recent projects, with the stamp of the runs they were read from
        self._columns: collections.OrderedDict[tuple[str, str], tuple[Any, dict[str, Any]]]
        self._columns = collections.OrderedDict()
        self._columns_lock = threading.Lock()

    def sweep_database(self) -> Connections:
        """The sweep tables' transactions: writes in the engine's write transaction (SQLite:
        ``BEGIN IMMEDIATE`` under the one writer's lock, so a claim sees every claim before it;
        PostgreSQL: the sweep's row read ``FOR UPDATE``), reads in one snapshot."""
        engine = self.engine
        return Connections(engine.write, engine.snapshot, engine.dialect.for_update)

    def close(self) -> None:
        self.engine.close()

    def counts(self) -> dict[str, int]:
        """The rows of every table, by table (what ``migrate-store`` verifies)."""
        out = {}
        with self.engine.read() as con:
            for table in self.engine.tables():
                (out[table],) = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return {t: int(n) for t, n in out.items()}

    def blob_digests(self) -> Iterator[tuple[str, int]]:
        """Every blob some entity holds, once each, with its size."""
        last = ""
        while True:  # a page at a time: a store of millions of files is never all in memory
            with self.engine.read() as con:
                rows = con.execute(
                    "SELECT digest, max(size) FROM blobs WHERE digest>? GROUP BY digest "
                    "ORDER BY digest LIMIT 1000",
                    (last,),
                ).fetchall()
            if not rows:
                return
            for digest, size in rows:
                yield str(digest), int(size)
            last = str(rows[-1][0])

    # --- ingest --------------------------------------------------------------------------------

    def ingest(self, entity: str, project: str, run_id: str, body: bytes) -> int:
        return self.ingest_batch(entity, project, run_id, body).held

    def ingest_batch(self, entity: str, project: str, run_id: str, body: bytes) -> Ingested:
        engine = self.engine
        with engine.hold_run(entity, project, run_id) as run:
            rid, held, state_text = run
            state = RunState.from_json(state_text)
            # decoded holding only this run: a huge batch holds back no other run
            batch = decode_batch(body, held, state)  # raises BadBatch before anything is written
            if batch.empty:
                return Ingested(int(held))
            # one writer: the history in chunks of CHUNK_COST, each its own transaction, the
            # writer's lock released between them (a writer waiting for it goes first); the last
            # chunk, the rest and ``held`` in one last transaction (most batches: that one alone).
            # Only that one says the batch is stored: after a kill between chunks the client
            # resends the batch, and writing a chunk's points again changes nothing (points are
            # merged by row ordinal, values replaced).
            chunks = list(_chunks(batch.series)) if engine.chunked else [batch.series]
            for chunk in chunks[:-1]:
                with engine.write() as con:
                    rid = self._run_row(con, rid, entity, project, run_id)
                    self._apply_series(con, rid, chunk)
            batch.series = chunks[-1] if chunks else []  # the last one goes with the rest
            # JSON of the state and summary made before writing (100,000 keys: seconds)
            texts = state.to_json(), _dumps(state.summary.result())
            with engine.write() as con:
                rid = self._run_row(con, rid, entity, project, run_id)
                self._apply(con, rid, batch, *texts, state.runtime)
            return Ingested(batch.held, batch.refused)

    @staticmethod
    def _run_row(con: Connection, rid: int | None, entity: str, project: str, run_id: str) -> int:
        """The run's ``rid``, creating its row when it has none."""
        if rid is None:
            now = time.time()
            (rid,) = con.execute(
                "INSERT INTO runs (entity, project, run_id, created, updated) "
                "VALUES (?, ?, ?, ?, ?) RETURNING rid",
                (entity, project, run_id, now, now),
            ).fetchone()
        assert rid is not None
        return int(rid)

    def _apply_series(self, con: Connection, rid: int, series: list[tuple[str, Any]]) -> None:
        for op, arg in series:
            if op == "points":
                for key, points in arg.items():
                    self._add_points(con, rid, key, points)
            elif op == "values":
                con.executemany(
                    "INSERT INTO other_values VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (rid, key, ordinal) DO UPDATE SET step=excluded.step, "
                    "runtime=excluded.runtime, timestamp=excluded.timestamp, value=excluded.value",
                    [(rid, *v) for v in arg],
                )
            else:
                self._rewind(con, rid, float(arg))

    def _apply(
        self,
        con: Connection,
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
                "INSERT INTO console VALUES (?, ?, ?, ?) ON CONFLICT (rid, seq) "
                "DO UPDATE SET stream=excluded.stream, text=excluded.text",
                [(rid, seq, stream, text) for seq, stream, text in batch.console],
            )
        if batch.stats:
            con.executemany(
                "INSERT INTO stats VALUES (?, ?, ?) ON CONFLICT (rid, seq) "
                "DO UPDATE SET data=excluded.data",
                [(rid, seq, _dumps(data)) for seq, data in batch.stats],
            )
        for f in batch.files:
            con.execute(
                "INSERT INTO files (rid, path, type, size) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (rid, path) DO UPDATE SET type=excluded.type, size=excluded.size",
                (rid, str(f["path"]), f.get("type"), f.get("size")),
            )
        logged = [art for art in batch.artifacts if not art.get("used")]
        if logged:
            entity, project, run_id = con.execute(
                "SELECT entity, project, run_id FROM runs WHERE rid=?", (rid,)
            ).fetchone()
            # each name's versions are counted under its lock, taken in one order by everyone
            for name in sorted({str(art["name"]) for art in logged}):
                self.engine.lock(con, f"artifact/{entity}/{project}/{name}")
            for art in logged:
                self._log_artifact(con, entity, project, run_id, art)

    def _log_artifact(
        self, con: Connection, entity: str, project: str, run_id: str, art: dict[str, Any]
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
        for alias in sorted({"latest", *(str(a) for a in art.get("aliases") or [])}):
            con.execute(
                "INSERT INTO aliases VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (entity, project, name, alias) DO UPDATE SET version=excluded.version",
                (entity, project, name, alias, version),
            )

    def load_series(
        self, entity: str, project: str, run_id: str, key: str, points: S.Array
    ) -> None:
        """Bulk-load one metric's points (``(FIELDS, n)``, by row ordinal) into a run, creating
        the run: for imports and benchmarks, bypassing run-log decoding."""
        with self.engine.write() as con:
            con.execute(
                "INSERT INTO runs (entity, project, run_id, created, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (entity, project, run_id, time.time(), time.time()),
            )
            (rid,) = con.execute(
                "SELECT rid FROM runs WHERE entity=? AND project=? AND run_id=?",
                (entity, project, run_id),
            ).fetchone()
            self._add_points(con, int(rid), key, points)

    # --- scalar series -------------------------------------------------------------------------

    @staticmethod
    def _load_points(
        con: Connection, rid: int, key: str, from_piece: int, to_piece: int = 2**62
    ) -> S.Array:
        rows = con.execute(
            "SELECT data FROM points WHERE rid=? AND key=? AND piece>=? AND piece<=? "
            "ORDER BY piece",
            (rid, key, from_piece, to_piece),
        ).fetchall()
        if not rows:
            return np.empty((S.FIELDS, 0))
        return np.concatenate([S.unpack_points(r[0]) for r in rows], axis=1)

    @staticmethod
    def _write_points(
        con: Connection, rid: int, key: str, from_piece: int, points: S.Array
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
        point_rows, piece_rows = [], []
        for i, start in enumerate(range(0, n, S.PIECE)):
            part = points[:, start : start + S.PIECE]
            m = S.summarize(part)
            bounds = (m.step_min, m.step_max, m.runtime_min, m.runtime_max, m.time_min, m.time_max)
            l1, l2, l3 = m.levels
            point_rows.append((rid, key, from_piece + i, S.pack_points(part)))
            piece_rows.append((rid, key, from_piece + i, m.n, m.ord_first, *bounds, l3, l2, l1))
        if point_rows:
            con.executemany("INSERT INTO points VALUES (?, ?, ?, ?)", point_rows)
            con.executemany(
                "INSERT INTO pieces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", piece_rows
            )
        total = from_piece * S.PIECE + n
        last_ord = float(points[S.ORD, -1]) if n else -1.0
        con.execute(
            "INSERT INTO series VALUES (?, ?, ?, ?) ON CONFLICT (rid, key) "
            "DO UPDATE SET n=excluded.n, last_ord=excluded.last_ord",
            (rid, key, total, last_ord),
        )
        new_full = total // S.PIECE
        if from_piece >= old_full and new_full == old_full:
            return  # only the partial last piece changed
        first_block = min(from_piece, old_full) // BLOCK
        if first_block and SqlStore._before_level4(con, [rid], key):
            first_block = 0  # a store from before level 4: its whole overview, made again
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
        overview = []
        for block, members in blocks.items():
            stats = (
                sum(int(r[1]) for r in members),
                *(min(r[c] for r in members) if c % 2 == 0 else max(r[c] for r in members)
                  for c in range(2, 8)),
            )  # fmt: skip
            for level, column in ((3, 8), (2, 9)):
                data = b"".join(bytes(r[column]) for r in members)
                overview.append((rid, key, level, block, *stats, data))
                if level == 2:  # level 4: pairs of level-2 entries (a full piece has 16)
                    level4 = S.pack_entries(S.coarser(S.unpack_entries(data), 2))
                    overview.append((rid, key, 4, block, *stats, level4))
        if overview:
            con.executemany(
                "INSERT INTO overview VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", overview
            )

    @staticmethod
    def _before_level4(con: Connection, rids: list[int], key: str) -> set[int]:
        """Which of ``rids`` have an overview of ``key`` without level 4: written before level 4
        existed (until their overview is made again, charts read level 2 for them)."""
        rows = con.execute(
            f"SELECT rid, max(level) FROM overview WHERE key=? AND rid IN "
            f"({', '.join('?' * len(rids))}) AND block=0 AND level>=3 GROUP BY rid",
            [key, *rids],
        ).fetchall()
        return {int(rid) for rid, level in rows if int(level) < 4}

    def _add_points(self, con: Connection, rid: int, key: str, new: S.Array) -> None:
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

    def _rewind(self, con: Connection, rid: int, step: float) -> None:
        keys = con.execute("SELECT key, n FROM series WHERE rid=?", (rid,)).fetchall()
        for key, n in keys:
            last = (int(n) - 1) // S.PIECE
            # from the last piece back, one piece read at a time (the pieces after it go whole)
            for piece in range(last, -1, -1):
                here = self._load_points(con, rid, key, piece, piece)
                cut = S.rewind_cut(here[S.STEP], step)
                if cut == here.shape[1] and piece == last:
                    break  # nothing at or past the rewound step
                if cut > 0 or piece == 0:
                    points = here if piece == last else self._load_points(con, rid, key, piece)
                    if key == ROWS:  # the rows that go are those from this one on
                        con.execute(
                            "DELETE FROM other_values WHERE rid=? AND ordinal>=?",
                            (rid, int(points[S.ORD, cut])),
                        )
                    self._write_points(con, rid, key, piece, points[:, :cut])
                    break

    # --- reads ---------------------------------------------------------------------------------

    def _find_run(
        self,
        con: Connection,
        columns: str,
        entity: str,
        project: str,
        run_id: str,
        *,
        lock: bool = False,
    ) -> Any:
        """The run's row (``columns``, a constant of this module), or NotFound; ``lock``: held
        until the transaction ends (a read that decides a write)."""
        row = con.execute(
            f"SELECT {columns} FROM runs WHERE entity=? AND project=? AND run_id=?"
            + (self.engine.dialect.for_update if lock else ""),
            (entity, project, run_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"run {entity}/{project}/{run_id} not found")
        return row

    def _rid(self, con: Connection, entity: str, project: str, run_id: str) -> int:
        return int(self._find_run(con, "rid", entity, project, run_id)[0])

    def held(self, entity: str, project: str, run_id: str) -> int:
        with self.engine.read() as con:
            row = con.execute(
                "SELECT held FROM runs WHERE entity=? AND project=? AND run_id=?",
                (entity, project, run_id),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def heartbeat(self, entity: str, project: str, run_id: str) -> None:
        with self.engine.write() as con:
            found = con.execute(
                "UPDATE runs SET updated=? WHERE entity=? AND project=? AND run_id=?",
                (time.time(), entity, project, run_id),
            ).rowcount
        if not found:
            raise NotFound(f"run {entity}/{project}/{run_id} not found")

    def mark_crashed(self, entity: str, project: str, run_id: str, last_seq: int) -> str:
        with self.engine.write() as con:
            row = self._find_run(con, "held, state", entity, project, run_id, lock=True)
            held, state = int(row[0]), str(row[1])
            if held != last_seq:
                raise Conflict(f"the server holds records up to {held}, not {last_seq}")
            if state == "running":
                state = "crashed"
                con.execute(
                    "UPDATE runs SET state=?, updated=? WHERE entity=? AND project=? AND run_id=?",
                    (state, time.time(), entity, project, run_id),
                )
            return state

    def entities(self, only: str | None) -> list[dict[str, Any]]:
        with self.engine.read() as con:
            rows = con.execute(
                "SELECT entity, count(DISTINCT project), count(*) FROM runs "
                "WHERE entity NOT LIKE 'anon-%' GROUP BY entity ORDER BY entity"
            ).fetchall()
        return [
            {"name": e, "projects": p, "runs": r} for e, p, r in rows if only is None or e == only
        ]

    def projects(self, entity: str) -> list[dict[str, Any]]:
        with self.engine.read() as con:
            rows = con.execute(
                "SELECT project, count(*), max(updated) FROM runs WHERE entity=? "
                "GROUP BY project ORDER BY project",
                (entity,),
            ).fetchall()
        return [{"name": _text(p), "runs": n, "updated": _num(u)} for p, n, u in rows]

    @staticmethod
    def _run_dict(row: Sequence[Any], full: bool) -> dict[str, Any]:
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

    def _filter(self, f: Filter) -> tuple[str, list[Any]]:
        """One condition of the runs query as SQL and its parameters."""
        if f.op not in OPS:
            raise ValueError(f"filter on {f.field!r}: op {f.op!r}, use one of {', '.join(OPS)}")
        dialect = self.engine.dialect
        column, _, path = f.field.partition(".")
        value = int(f.value) if isinstance(f.value, bool) else f.value
        if f.field == "tags":
            if f.op in ("=", "!="):
                return f"{'NOT ' if f.op == '!=' else ''}{dialect.has_tag()}", [value]
            if f.op == "~":
                return dialect.tag_like(), [_like(value)]
            raise ValueError(f"filter on tags: op {f.op!r}, use = (has the tag), != or ~")
        if f.field in RUN_FIELDS:
            return self._field_filter(f, FIELD_COLUMNS.get(f.field, f.field), value)
        if column not in ("config", "summary") or not path:
            fields = ", ".join(RUN_FIELDS)
            raise ValueError(f"filter on {f.field!r}: use config.<key>, summary.<key> or {fields}")
        if f.value is None:
            return _is_null(f, *dialect.json_value(column, path))
        if f.op == "~":
            text_sql, params = dialect.json_text(column, path)
            return f"{text_sql} {dialect.ilike} ? ESCAPE '\\'", [*params, _like(f.value)]
        value_sql, params = dialect.json_value(column, path)
        placeholder, param = dialect.json_param(f.value)
        return f"{value_sql} {OPS[f.op]} {placeholder}", [*params, param]

    def _field_filter(self, f: Filter, column: str, value: Any) -> tuple[str, list[Any]]:
        """A condition on one of the run's own columns (``RUN_FIELDS`` but tags)."""
        if value is None:
            return _is_null(f, column, [])
        if f.op == "~":
            return f"CAST({column} AS TEXT) {self.engine.dialect.ilike} ? ESCAPE '\\'", [
                _like(value)
            ]
        return f"{column} {OPS[f.op]} ?", [value]

    def runs(self, entity: str, project: str, query: RunQuery) -> RunPage:
        dialect = self.engine.dialect
        where = ["entity=?", "project=?"]
        params: list[Any] = [entity, project]
        if query.states:
            where.append(f"state IN ({', '.join('?' * len(query.states))})")
            params += query.states
        if query.ids:
            where.append(f"run_id IN ({', '.join('?' * len(query.ids))})")
            params += query.ids
        for tag in query.tags:
            where.append(dialect.has_tag())
            params.append(tag)
        if query.group is not None:
            where.append("grp=?")
            params.append(query.group)
        if query.search:
            like = dialect.ilike
            where.append(f"(name {like} ? ESCAPE '\\' OR run_id {like} ? ESCAPE '\\')")
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
            order, order_params = dialect.json_value(column, path)
        clause = " AND ".join(where)
        direction = "DESC" if descending else "ASC"
        with self.engine.read() as con:
            (total,) = con.execute(f"SELECT count(*) FROM runs WHERE {clause}", params).fetchone()
            # the page's rids first, then their rows: sorting only rids is ~10x faster at 10,000
            # runs than sorting whole rows (config and summary JSON ride along in the sorter)
            rids = [int(rid) for (rid,) in con.execute(
                f"SELECT rid FROM runs WHERE {clause} "
                f"ORDER BY {order} IS NULL, {order} {direction}, rid {direction} LIMIT ? OFFSET ?",
                [*params, *order_params, *order_params, query.limit, query.offset],
            )]  # fmt: skip
            found: dict[int, Sequence[Any]] = {}
            for start in range(0, len(rids), PAGE_CHUNK):
                chunk = rids[start : start + PAGE_CHUNK]
                for row in con.execute(
                    f"SELECT rid, {_RUN_COLUMNS} FROM runs "
                    f"WHERE rid IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ):
                    found[int(row[0])] = row[1:]
        runs = [self._run_dict(found[rid], full=False) for rid in rids if rid in found]
        if query.fields is not None:
            _keep_fields(runs, query.fields)
        return RunPage(int(total), runs)

    def columns(self, entity: str, project: str) -> dict[str, Any]:
        """Every top-level config and summary key of the project's runs, and every history key,
        each with the number of runs that have it; and under ``paths`` every leaf path of config
        and summary (``model.depth``: the runs table's column picker; ``column_paths``).

        Decoding every run's JSON costs ~1 s at 10,000 runs, and the
        project page, its JSON twin and the column picker all ask: the answer is kept (per
        process, the last ``KEPT_COLUMNS`` projects) until a run of the project changes. Every
        ingest moves the run's ``updated`` and ``held``, a heartbeat or a crash mark its
        ``updated``, a run deleted the count: the stamp of the three is read before the answer,
        so a write in between (from any process) only makes the next call read again."""
        with self.engine.read() as con:
            stamp = tuple(con.execute(
                "SELECT count(*), max(updated), sum(held) FROM runs WHERE entity=? AND project=?",
                (entity, project),
            ).fetchone())  # fmt: skip
            with self._columns_lock:
                kept = self._columns.get((entity, project))
            if kept is not None and kept[0] == stamp:
                return _copy_columns(kept[1])  # a copy: callers may change theirs
            out = self._read_columns(con, entity, project)
        with self._columns_lock:
            self._columns[(entity, project)] = (stamp, out)
            self._columns.move_to_end((entity, project))
            while len(self._columns) > KEPT_COLUMNS:
                self._columns.popitem(last=False)
        return _copy_columns(out)

    def _read_columns(self, con: Connection, entity: str, project: str) -> dict[str, Any]:
        out: dict[str, Any] = {"paths": {}}
        # decoded here: walking the JSON in SQL (json_each / jsonb_each, recursively into the
        # nested objects) measured 2-2.5x slower than json.loads at 10,000 runs on both engines
        docs: dict[str, list[Any]] = {"config": [], "summary": []}
        for config, summary in con.execute(
            "SELECT config, summary FROM runs WHERE entity=? AND project=?", (entity, project)
        ):
            docs["config"].append(_loads(config, {}))
            docs["summary"].append(_loads(summary, {}))
        for column, values in docs.items():
            counts: collections.Counter[str] = collections.Counter()
            for value in values:
                if isinstance(value, dict):
                    counts.update(value.keys())
            out[column] = dict(sorted(counts.items()))
            out["paths"][column] = column_paths(iter(values))
        rows = con.execute(
            "SELECT key, count(*) FROM series WHERE rid IN "
            "(SELECT rid FROM runs WHERE entity=? AND project=?) GROUP BY key ORDER BY key",
            (entity, project),
        ).fetchall()
        out["history"] = {str(k): int(n) for k, n in rows}
        return out

    def run(self, entity: str, project: str, run_id: str) -> dict[str, Any]:
        with self.engine.read() as con:
            row = self._find_run(
                con, f"{_RUN_COLUMNS}, meta, exit, metrics, rid", entity, project, run_id
            )
            keys = con.execute(
                "SELECT key, n FROM series WHERE rid=? ORDER BY key", (row[17],)
            ).fetchall()
        out = self._run_dict(row, full=True)
        out["history_keys"] = {k: n for k, n in keys}  # noqa: C416
        return out

    def _entries_at(
        self,
        con: Connection,
        pairs: list[tuple[int, str]],
        level: int,
        column: str | None,
        lo: float,
        hi: float,
    ) -> dict[tuple[int, str], S.Array]:
        """``_entries_of``, but at level 2 for the series without level 4 (``_before_level4``)."""
        if level != 4:
            return self._entries_of(con, pairs, level, column, lo, hi)
        old: set[tuple[int, str]] = set()
        for key in dict.fromkeys(k for _, k in pairs):
            old |= {
                (r, key) for r in self._before_level4(con, [r for r, k in pairs if k == key], key)
            }
        out = self._entries_of(con, [p for p in pairs if p not in old], 4, column, lo, hi)
        if old:
            out.update(self._entries_of(con, [p for p in pairs if p in old], 2, column, lo, hi))
        return out

    def _entries_of(
        self,
        con: Connection,
        pairs: list[tuple[int, str]],
        level: int,
        column: str | None,
        lo: float,
        hi: float,
    ) -> dict[tuple[int, str], S.Array]:
        """The entries at ``level`` of each series ``(rid, key)`` of ``pairs`` (with ``column``:
        only the pieces whose ``column`` range meets ``[lo, hi]``): one or two statements per
        key for all its runs, so a chart of 100 runs costs the round trips of one.

        The rows are taken as they come, run by run (never a whole answer's bytes at once: a
        100-run chart is 30 MiB of them, and holding them all made it three times slower)."""
        out: dict[tuple[int, str], S.Array] = {}
        by_key: dict[str, list[int]] = {}
        for rid, key in pairs:
            by_key.setdefault(key, []).append(rid)
        bounds = "" if column is None else f" AND {column}max>=? AND {column}min<=?"
        for key, rids in by_key.items():
            # key=? AND rid IN (...): the index's own order (a row value IN would scan)
            which = f"key=? AND rid IN ({', '.join('?' * len(rids))})"
            params: list[Any] = [key, *rids] + ([] if column is None else [lo, hi])
            tail: dict[int, bytes] = {}  # levels 2 and 3: the partial last piece's entries
            if level == 0:
                rows = con.execute(
                    "SELECT rid, p.data FROM points p JOIN pieces q USING (rid, key, piece) "
                    f"WHERE p.{which.replace(' AND rid', ' AND p.rid')}"
                    f"{bounds.replace(' AND ', ' AND q.')} ORDER BY rid, piece",
                    params,
                )
            elif level == 1:
                rows = con.execute(
                    f"SELECT rid, l1 FROM pieces WHERE {which}{bounds} ORDER BY rid, piece",
                    params,
                )
            else:  # one overview row per BLOCK full pieces, then the partial piece
                tail = {
                    int(rid): bytes(data)
                    for rid, data in con.execute(
                        f"SELECT rid, q.l{3 if level == 3 else 2} "  # level 4: from l2
                        "FROM series s JOIN pieces q USING (rid, key) "
                        f"WHERE s.{which.replace(' AND rid', ' AND s.rid')}"
                        f"{bounds.replace(' AND ', ' AND q.')} AND q.n<? AND q.piece=(s.n-1)/?",
                        [*params, S.PIECE, S.PIECE],  # the last piece, when it is not full
                    )
                }
                rows = con.execute(
                    f"SELECT rid, data FROM overview WHERE {which} AND level={int(level)}"
                    f"{bounds} ORDER BY rid, block",
                    params,
                )

            current, chunks = -1, list[bytes]()
            for rid, data in rows:
                if rid != current:
                    if chunks:
                        out[(current, key)] = _unpacked(level, chunks, tail.pop(current, None))
                    current, chunks = int(rid), []
                chunks.append(bytes(data))
            if chunks:
                out[(current, key)] = _unpacked(level, chunks, tail.pop(current, None))
            for rid, partial in tail.items():  # a series all in its partial piece
                out[(rid, key)] = _unpacked(level, [], partial)
        for pair in pairs:
            out.setdefault(pair, np.empty((0, S.ENTRY_FIELDS)))
        return out

    def _entries(
        self,
        con: Connection,
        rid: int,
        key: str,
        level: int,
        column: str | None,
        lo: float,
        hi: float,
    ) -> S.Array:
        return self._entries_of(con, [(rid, key)], level, column, lo, hi)[(rid, key)]

    def _points_in(
        self, con: Connection, pairs: list[tuple[int, str]], column: str | None, lo: float,
        hi: float, ranged: bool,
    ) -> dict[tuple[int, str], int]:  # fmt: skip
        """How many points each series of ``pairs`` has (``ranged``: in ``[lo, hi]`` of
        ``column``, assuming each block's, and the partial last piece's, points spread evenly
        over its range): a statement per key for all its runs."""
        by_key: dict[str, list[int]] = {}
        for rid, key in pairs:
            by_key.setdefault(key, []).append(rid)
        out: dict[tuple[int, str], int] = {}
        for key, rids in by_key.items():
            which = f"key=? AND rid IN ({', '.join('?' * len(rids))})"
            if not ranged or column is None:
                rows = con.execute(f"SELECT rid, n FROM series WHERE {which}", [key, *rids])
                out.update({(int(r), key): int(n) for r, n in rows})
                continue
            c, dialect = column, self.engine.dialect
            share = (
                f"n * ({dialect.least}(?, {c}max) - {dialect.greatest}(?, {c}min) + 1e-9) "
                f"/ ({c}max - {c}min + 1e-9)"
            )
            within = f"{which} AND {c}max>=? AND {c}min<=?"
            last = (  # the last piece, when it is not full
                f"SELECT rid, {share.replace('n *', 'q.n *')} FROM series s JOIN pieces q "
                f"USING (rid, key) WHERE s.{which.replace(' AND rid', ' AND s.rid')} AND "
                f"q.{c}max>=? AND q.{c}min<=? AND q.n<? AND q.piece=(s.n-1)/?"
            )
            rows = con.execute(
                f"SELECT rid, sum(share) FROM (SELECT rid, {share} AS share FROM overview "
                f"WHERE {within} AND level=3 UNION ALL {last}) AS shares GROUP BY rid",
                [hi, lo, key, *rids, lo, hi, hi, lo, key, *rids, lo, hi, S.PIECE, S.PIECE],
            )
            out.update(
                {(int(r), key): 0 if n is None else max(1, int(np.ceil(n))) for r, n in rows}
            )
        return out

    def history(self, entity: str, project: str, query: HistoryQuery) -> list[dict[str, Any]]:
        column = {"_step": "s", "_runtime": "r", "_timestamp": "t"}.get(query.x)
        lo = -np.inf if query.lo is None else query.lo
        hi = np.inf if query.hi is None else query.hi
        runs = list(dict.fromkeys(query.runs))
        with self.engine.read() as con:
            found = con.execute(
                "SELECT run_id, rid FROM runs WHERE entity=? AND project=? AND run_id IN "
                f"({', '.join('?' * len(runs))})",
                [entity, project, *runs],
            ).fetchall() if runs else []  # fmt: skip
            rids = {str(r): int(i) for r, i in found}
            for run_id in runs:
                if run_id not in rids:
                    raise NotFound(f"run {entity}/{project}/{run_id} not found")
            pairs = [(rids[r], key) for r in runs for key in query.keys]
            ranged = query.lo is not None or query.hi is not None
            counts = self._points_in(con, pairs, column, lo, hi, ranged) if pairs else {}
            by_level: dict[int, list[tuple[int, str]]] = {}
            for pair in pairs:
                if counts.get(pair, 0):
                    by_level.setdefault(S.level_for(counts[pair], query.buckets), []).append(pair)
            entries: dict[tuple[int, str], S.Array] = {}
            x_entries: dict[tuple[int, str], S.Array] = {}
            for level, members in by_level.items():
                entries.update(self._entries_at(con, members, level, column, lo, hi))
                if column is None:  # a step metric as the x-axis: its entries at the same level
                    steps = list(dict.fromkeys((rid, query.x) for rid, _ in members))
                    got = self._entries_at(con, steps, level, None, lo, hi)
                    x_entries.update({(rid, key): got[(rid, query.x)] for rid, key in members})
        return _charts(query, runs, rids, entries, x_entries, column)

    def frames(self, entity: str, project: str, run_id: str) -> Iterator[bytes]:
        with self.engine.read() as con:
            rid = self._rid(con, entity, project, run_id)
        last = 0
        while True:  # one segment at a time: an export never holds the whole run in memory
            with self.engine.read() as con:  # nor a connection while the answer streams
                row = con.execute(
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
        with self.engine.read() as con:
            rid = self._rid(con, entity, project, run_id)
            rows = con.execute(
                "SELECT seq, stream, text FROM console WHERE rid=? AND seq>? ORDER BY seq LIMIT ?",
                (rid, after, limit),
            ).fetchall()
        return [{"seq": s, "stream": st, "text": t} for s, st, t in rows]

    def system(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]:
        with self.engine.read() as con:
            rid = self._rid(con, entity, project, run_id)
            rows = con.execute(
                "SELECT seq, data FROM stats WHERE rid=? ORDER BY seq", (rid,)
            ).fetchall()
        return [{**_loads(d, {}), "seq": s} for s, d in rows]

    def files(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]:
        with self.engine.read() as con:
            rid = self._rid(con, entity, project, run_id)
            rows = con.execute(
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
        with self.engine.read() as con:
            rid = self._rid(con, entity, project, run_id)
            row = con.execute(
                "SELECT digest FROM files WHERE rid=? AND path=?", (rid, path)
            ).fetchone()
        if row is None or row[0] is None:
            raise NotFound(f"file {path!r} of run {run_id} not found")
        return str(row[0])

    def put_file(
        self, entity: str, project: str, run_id: str, path: str, digest: str, size: int
    ) -> None:
        with self.engine.write() as con:  # both or neither: the file is listed only with its blob
            rid = self._rid(con, entity, project, run_id)
            con.execute(
                "INSERT INTO files (rid, path, size, digest) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (rid, path) DO UPDATE SET size=excluded.size, "
                "digest=excluded.digest",
                (rid, path, size, digest),
            )
            con.execute(
                "INSERT INTO blobs VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (entity, digest, size)
            )

    def missing_blobs(self, entity: str, digests: list[str]) -> list[str]:
        with self.engine.read() as con:
            return [
                d
                for d in digests
                if con.execute(
                    "SELECT 1 FROM blobs WHERE entity=? AND digest=?", (entity, d)
                ).fetchone()
                is None
            ]

    def add_blob(self, entity: str, digest: str, size: int) -> None:
        with self.engine.write() as con:
            con.execute(
                "INSERT INTO blobs VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (entity, digest, size)
            )

    def has_blob(self, entity: str, digest: str) -> bool:
        return not self.missing_blobs(entity, [digest])

    def blob_bytes(self, entity: str) -> int:
        with self.engine.read() as con:
            (total,) = con.execute(
                "SELECT coalesce(sum(size), 0) FROM blobs WHERE entity=?", (entity,)
            ).fetchone()
        return int(total)

    def artifact_collections(self, entity: str, project: str) -> list[dict[str, Any]]:
        with self.engine.read() as con:
            rows = con.execute(
                "SELECT name, (SELECT type FROM artifacts b WHERE b.entity=a.entity AND "
                "b.project=a.project AND b.name=a.name ORDER BY created DESC, version DESC "
                "LIMIT 1), count(*), max(created) FROM artifacts a "
                "WHERE entity=? AND project=? GROUP BY entity, project, name ORDER BY name",
                (entity, project),
            ).fetchall()
        return [
            {"name": _text(n), "type": _text(t), "versions": c, "updated": _num(u)}
            for n, t, c, u in rows
        ]

    @staticmethod
    def _aliases(con: Connection, entity: str, project: str, name: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for alias, version in con.execute(
            "SELECT alias, version FROM aliases WHERE entity=? AND project=? AND name=? "
            "ORDER BY alias",
            (entity, project, name),
        ):
            out.setdefault(version, []).append(_text(alias) or "")
        return out

    def artifact_versions(self, entity: str, project: str, name: str) -> list[dict[str, Any]]:
        with self.engine.read() as con:
            rows = con.execute(
                "SELECT version, type, digest, run_id, created, metadata FROM artifacts "
                "WHERE entity=? AND project=? AND name=? ORDER BY version",
                (entity, project, name),
            ).fetchall()
            if not rows:
                raise NotFound(f"artifact {name!r} not found in {entity}/{project}")
            aliases = self._aliases(con, entity, project, name)
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
        with self.engine.read() as con:
            rid = self._rid(con, entity, project, run_id)
            rows = con.execute(
                "SELECT step, runtime, timestamp, value FROM other_values "
                "WHERE rid=? AND key=? AND step>=? AND step<=? ORDER BY ordinal LIMIT ?",
                (rid, key, lo, hi, limit),
            ).fetchall()
        return [
            {"_step": _num(st), "_runtime": _num(rt), "_timestamp": _num(ts), "value": _loads(v)}
            for st, rt, ts, v in rows
        ]

    def run_artifacts(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]:
        with self.engine.read() as con:
            self._rid(con, entity, project, run_id)  # 404 for an unknown run
            rows = con.execute(
                "SELECT name, version, type, digest, created FROM artifacts "
                "WHERE entity=? AND project=? AND run_id=? ORDER BY name, version",
                (entity, project, run_id),
            ).fetchall()
            aliases = {n: self._aliases(con, entity, project, n) for n in {r[0] for r in rows}}
        return [
            {
                "name": _text(n),
                "version": f"v{v}",
                "type": _text(t),
                "digest": _text(d),
                "created": _num(c),
                "aliases": aliases[n].get(v, []),
            }
            for n, v, t, d, c in rows
        ]

    def artifact(self, entity: str, project: str, name: str, version: str) -> dict[str, Any]:
        with self.engine.read() as con:
            if version.startswith("v") and version[1:].isdigit():
                number: int | None = int(version[1:])
            else:
                found = con.execute(
                    "SELECT version FROM aliases "
                    "WHERE entity=? AND project=? AND name=? AND alias=?",
                    (entity, project, name, version),
                ).fetchone()
                number = None if found is None else int(found[0])
            row = None
            if number is not None and number < 2**63:
                row = con.execute(
                    "SELECT type, digest, run_id, created, metadata, entries FROM artifacts "
                    "WHERE entity=? AND project=? AND name=? AND version=?",
                    (entity, project, name, number),
                ).fetchone()
            if row is None or number is None:
                raise NotFound(f"artifact {name}:{version} not found in {entity}/{project}")
            aliases = self._aliases(con, entity, project, name).get(number, [])
        t, d, r, c, m, e = row
        return {
            "name": name,
            "version": f"v{number}",
            "type": _text(t),
            "digest": _text(d),
            "run": _text(r),
            "created": _num(c),
            "metadata": _loads(m, {}),
            "aliases": aliases,
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
        texts = _dumps(entries), _dumps(metadata)
        with self.engine.write() as con:
            found = con.execute(
                "UPDATE artifacts SET entries=?, metadata=? "
                "WHERE entity=? AND project=? AND name=? AND digest=? RETURNING version",
                (*texts, entity, project, name, digest),
            ).fetchall()
        if not found:
            raise NotFound(f"no version of artifact {name!r} has digest {digest}")
        return f"v{min(int(v) for (v,) in found)}"

    # --- keys and anonymous spaces -------------------------------------------------------------

    def create_key(self, entity: str) -> str:
        key = "fulmen_" + secrets.token_urlsafe(32)
        with self.engine.write() as con:
            con.execute("INSERT INTO api_keys VALUES (?, ?, ?)", (_hash(key), entity, time.time()))
        return key

    def entity_for_key(self, key: str) -> str | None:
        with self.engine.read() as con:
            row = con.execute("SELECT entity FROM api_keys WHERE hash=?", (_hash(key),)).fetchone()
        return None if row is None else str(row[0])

    def has_keys(self) -> bool:
        with self.engine.read() as con:
            return con.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    def create_anonymous(self) -> str:
        token = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        with self.engine.write() as con:
            con.execute("INSERT INTO anonymous VALUES (?, ?)", (_hash(token), time.time()))
        return ANON_PREFIX + token

    def anonymous_exists(self, entity: str) -> bool:
        if not entity.startswith(ANON_PREFIX):
            return False
        token = entity.removeprefix(ANON_PREFIX)
        with self.engine.read() as con:
            row = con.execute("SELECT 1 FROM anonymous WHERE hash=?", (_hash(token),)).fetchone()
        return row is not None

    # --- reports (their SQL: _store_reports) -----------------------------------------------------

    def reports(self, entity: str, project: str) -> list[dict[str, Any]]:
        with self.engine.read() as con:
            return self._reports.list(con, entity, project)

    def report(self, entity: str, project: str, report_id: str) -> dict[str, Any]:
        with self.engine.read() as con:
            return self._reports.get(con, entity, project, report_id)

    def report_exists(self, entity: str, project: str, report_id: str) -> bool:
        with self.engine.read() as con:
            return self._reports.exists(con, entity, project, report_id)

    def save_report(
        self, entity: str, project: str, report: dict[str, Any], snapshots: dict[str, Any]
    ) -> None:
        with self.engine.write() as con:
            self._reports.save(con, entity, project, report, snapshots, time.time())

    def report_snapshots(self, entity: str, project: str, report_id: str) -> dict[str, Any]:
        with self.engine.read() as con:
            return self._reports.snapshots(con, entity, project, report_id)

    def delete_report(self, entity: str, project: str, report_id: str) -> None:
        with self.engine.write() as con:
            found = self._reports.delete(con, entity, project, report_id)
        if not found:
            raise NotFound(f"report {entity}/{project}/{report_id} not found")

    # --- workspaces (their SQL: _store_workspaces) ----------------------------------------------

    def workspace(self, entity: str, project: str, owner: str) -> dict[str, Any] | None:
        with self.engine.read() as con:
            return self._workspaces.get(con, entity, project, owner)

    def put_workspace(self, entity: str, project: str, owner: str, layout: dict[str, Any]) -> float:
        with self.engine.write() as con:
            return self._workspaces.put(con, entity, project, owner, layout)

    def delete_workspace(self, entity: str, project: str, owner: str) -> None:
        with self.engine.write() as con:
            self._workspaces.delete(con, entity, project, owner)
