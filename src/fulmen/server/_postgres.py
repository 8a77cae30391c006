"""The engine for a team: PostgreSQL, under ``_sqlstore.SqlStore`` (the queries), shared by any
number of server processes (``fulmen server --database postgresql://...``).

psycopg 3 with a connection pool (``psycopg_pool``): each store call takes a connection for its
statements and gives it back, so a process holds at most ``FULMEN_DATABASE_POOL`` connections
(default 10) whatever its thread count; the pool checks a connection before handing it out, so a
database restarted under a running server costs the requests of that moment a 503 (retried by the
uploader) and nothing after: the server reconnects on its own.

Several processes write at once, so what one process's locks did for SQLite rows and PostgreSQL
locks do here, in the same transactions:

- ingest holds the run's row (``SELECT ... FOR UPDATE``) from reading ``held`` and the ingest state
  to its commit, and writes the whole batch in that one transaction: two processes ingesting one
  run take turns, the second decoding against what the first stored, so re-sending any range of
  records changes nothing, from any process. A run's first batch has no row to hold: it takes the
  run's advisory lock (``pg_advisory_xact_lock``) and reads again, so of two first batches one
  creates the row and the other then holds it.
- an artifact's versions are counted under the artifact's advisory lock (``Engine.lock``).
- migrations run under one advisory lock: of several processes starting together one migrates and
  the others find it done.

The schema version is in the table ``schema_version`` (one row per migration applied). Text
placeholders: the store's SQL is written with ``?``, which ``PgConnection`` turns into psycopg's
``%s`` (the store's SQL never holds a ``?`` of its own). The jsonb columns are read back as their
text, as SQLite's JSON columns are.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fulmen.server._migrations import MIGRATIONS, Migration, StoreTooNew
from fulmen.server._sqlstore import Connection, Cursor, Dialect, HeldRun, SqlStore, field_path
from fulmen.server.store import StoreFull, StoreUnavailable, redact

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresEngine", "PostgresStore", "migrate"]

POOL_SIZE = 10  # connections per server process (FULMEN_DATABASE_POOL)
POOL_TIMEOUT = 10.0  # seconds a request waits for a connection before a 503
CONNECT_TIMEOUT = 10  # seconds to reach the database at start
MIGRATE_LOCK = 0x66756C6D656E  # the advisory lock migrations run under ("fulmen")

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))"


@functools.lru_cache(maxsize=4096)
def _placeholders(sql: str) -> str:
    """The store's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection speaking the store's SQL (``?`` placeholders)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        # binary results: bytea as its bytes, not hex text twice its size (a chart reads MiBs)
        return self.raw.execute(_placeholders(sql), parameters, binary=True)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(_placeholders(sql), parameters)  # pipelined: one round trip
        return cursor


class PostgresDialect:
    """``_sqlstore.Dialect`` for PostgreSQL: ``config``, ``summary`` and ``tags`` are jsonb."""

    least = "LEAST"
    greatest = "GREATEST"
    ilike = "ILIKE"
    for_update = " FOR UPDATE"

    def json_value(self, column: str, path: str) -> tuple[str, list[Any]]:
        # JSON null is SQL NULL here, as SQLite's json_extract has it
        return f"NULLIF({column} #> ?, 'null'::jsonb)", [field_path(path)]

    def json_param(self, value: Any) -> tuple[str, Any]:
        import json

        return "CAST(? AS jsonb)", json.dumps(value)

    def json_text(self, column: str, path: str) -> tuple[str, list[Any]]:
        return f"({column} #>> ?)", [field_path(path)]  # a string unquoted, anything else as JSON

    def has_tag(self) -> str:
        return "jsonb_exists(runs.tags, ?)"

    def tag_like(self) -> str:
        tags = "CASE WHEN jsonb_typeof(runs.tags) = 'array' THEN runs.tags END"
        return (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({tags}) AS t(value) "
            "WHERE t.value ILIKE ? ESCAPE '\\')"
        )

    def object_keys(self, column: str) -> str:
        # a column that is not an object (a hand edit) has no keys, rather than failing the query
        return (
            f"jsonb_object_keys(CASE WHEN jsonb_typeof(runs.{column}) = 'object' "
            f"THEN runs.{column} END) AS j(key)"
        )


def _configure(raw: psycopg.Connection[Any]) -> None:
    from psycopg.adapt import Loader
    from psycopg.pq import Format
    from psycopg.types.string import TextLoader

    class JsonbText(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> str:
            return bytes(data[1:]).decode()  # after jsonb's version byte: its text

    class JsonText(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> str:
            return bytes(data).decode()

    # JSON columns read as their text, as SQLite gives them
    for name in ("json", "jsonb"):
        raw.adapters.register_loader(name, TextLoader)
    raw.adapters.register_loader("jsonb", JsonbText)
    raw.adapters.register_loader("json", JsonText)


def migrate(raw: psycopg.Connection[Any], migrations: tuple[Migration, ...], *, where: str) -> int:
    """Bring the database on ``raw`` (autocommit) to the last of ``migrations``; its version.

    Each migration runs in its own transaction with its row in ``schema_version`` (PostgreSQL's
    DDL is transactional: a failed migration leaves the store at the version before it), under
    the advisory lock ``MIGRATE_LOCK``, so of several server processes starting at once one
    migrates and the others wait and find it done. A store newer than ``migrations`` is refused
    (``StoreTooNew``)."""
    latest = migrations[-1].version if migrations else 0
    while True:
        with raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            raw.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "title TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)"
            )
            row = raw.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            current = int(row[0]) if row else 0
            if current > latest:
                raise StoreTooNew(where, current, latest)
            step = next((m for m in migrations if m.version > current), None)
            if step is None:
                return current
            for statement in step.statements("postgresql"):
                raw.execute(statement)  # no parameters: taken as it is
            raw.execute(
                "INSERT INTO schema_version VALUES (%s, %s, %s)",
                (step.version, step.title, time.time()),
            )


SCAN_ROWS = 500  # rows per batch when a table is copied (a row of points is ~160 KiB)


def _holdable(row: tuple[Any, ...], jsonb: set[int]) -> tuple[tuple[Any, ...], int]:
    """``row`` (from a copy of a store) as PostgreSQL holds it, and how many values changed: text
    without NUL (older SQLite stores could hold it), JSON text for the jsonb columns without NaN
    or NUL (jsonb has neither; a value that is not JSON at all becomes its column's empty value,
    as reading it shows it)."""
    import json

    from fulmen.server._ingest import storable

    out = list(row)
    changed = 0
    for i, value in enumerate(out):
        if i in jsonb:
            fixed: Any = value
            try:
                parsed = json.loads(value)
                held = _holdable_json(parsed)
                if held != parsed or "\\u0000" in value:  # NaN != NaN: rewritten too
                    fixed = json.dumps(held, separators=(",", ":"))
            except (TypeError, ValueError, RecursionError):
                fixed = "[]" if isinstance(value, str) and value.lstrip().startswith("[") else "{}"
            if fixed != value:
                out[i], changed = fixed, changed + 1
        elif isinstance(value, str) and "\x00" in value:
            out[i], changed = storable(value), changed + 1
    return tuple(out), changed


def _holdable_json(value: Any) -> Any:
    """A parsed JSON value with NaN and infinities as None and its text ``storable``."""
    import math

    from fulmen.server._ingest import storable

    if isinstance(value, str):
        return storable(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_holdable_json(v) for v in value]
    if isinstance(value, dict):
        return {storable(str(k)): _holdable_json(v) for k, v in value.items()}
    return value


def _pool_size() -> int:
    text = os.environ.get("FULMEN_DATABASE_POOL", "").strip()
    if not text:
        return POOL_SIZE
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"FULMEN_DATABASE_POOL={text!r}: give the number of database connections per server "
            f"process, 1 or more (default {POOL_SIZE})"
        )
    return int(text)


class PostgresEngine:
    """``_sqlstore.Engine`` on a PostgreSQL database (see the module docstring)."""

    name = "postgresql"
    chunked = False  # no single writer to make way for: a batch is one transaction
    dialect: Dialect = PostgresDialect()

    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ValueError(
                f"the database {redact(url)} needs psycopg 3 and psycopg-pool: "
                "pip install 'fulmen[postgres]'"
            ) from exc
        self.where = redact(url)
        self._psycopg = psycopg
        # first one connection of our own: a failure says why (no such database, a password...)
        with (
            self._errors("cannot open"),
            psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as raw,
        ):
            _configure(raw)
            self.version = migrate(raw, MIGRATIONS, where=self.where)
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size or _pool_size(),
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            configure=_configure,
            check=ConnectionPool.check_connection,  # a connection the database dropped: replaced
            timeout=POOL_TIMEOUT,
            name="fulmen",
            open=False,
        )
        self._pool.open()
        self._local = threading.local()  # the connection of the ingest this thread runs

    @contextmanager
    def _errors(self, doing: str = "lost") -> Iterator[None]:
        errors = self._psycopg
        try:
            yield
        except errors.errors.DiskFull as exc:
            raise StoreFull(f"the database {self.where} is full: {exc}") from exc
        except (errors.OperationalError, errors.InterfaceError) as exc:
            # down, restarting, unreachable, out of connections, a deadlock broken: all retried
            raise StoreUnavailable(
                f"the database {self.where}: {doing} ({type(exc).__name__}: {exc})".strip()
            ) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._errors(), self._pool.connection() as raw:
            yield PgConnection(raw)

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        with self._errors(), self._pool.connection() as raw, raw.transaction():
            raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PgConnection(raw)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        held: PgConnection | None = getattr(self._local, "con", None)
        if held is not None:  # in an ingest: its transaction, which holds the run
            yield held
            return
        with self._errors(), self._pool.connection() as raw, raw.transaction():
            yield PgConnection(raw)

    @contextmanager
    def hold_run(self, entity: str, project: str, run_id: str) -> Iterator[HeldRun]:
        select = (
            "SELECT rid, held, ingest_state FROM runs "
            "WHERE entity=? AND project=? AND run_id=? FOR UPDATE"
        )
        key = (entity, project, run_id)
        # pipelined: the batch's writes go out without waiting each for its answer (a read
        # waits for what was sent before it); an error still fails the whole transaction
        with self._errors(), self._pool.connection() as raw, raw.pipeline(), raw.transaction():
            con = PgConnection(raw)
            row = con.execute(select, key).fetchone()
            if row is None:  # no row to hold yet: the run's lock, then look again
                con.execute(_LOCK, (f"run/{entity}/{project}/{run_id}",))
                row = con.execute(select, key).fetchone()
            self._local.con = con
            try:
                yield (int(row[0]), int(row[1]), row[2]) if row else (None, 0, None)
            finally:
                self._local.con = None

    def lock(self, con: Connection, key: str) -> None:
        con.execute(_LOCK, (key,))

    def tables(self) -> list[str]:
        with self.read() as con:
            rows = con.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'schema_version' ORDER BY tablename"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def scan(self, table: str) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
        with (
            self._errors(),
            self._pool.connection() as raw,
            raw.transaction(),
            raw.cursor(name="fulmen_scan") as cursor,  # server side: streamed, not all at once
        ):
            cursor.execute(f'SELECT * FROM "{table}"'.encode())
            while rows := cursor.fetchmany(SCAN_ROWS):
                assert cursor.description is not None
                yield [d.name for d in cursor.description], rows

    def load_rows(
        self, con: Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]
    ) -> int:
        assert isinstance(con, PgConnection)
        found = con.execute(
            "SELECT column_name, data_type, is_identity FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        ).fetchall()
        types = {str(name): str(kind) for name, kind, _ in found}
        identity = [str(name) for name, _, is_identity in found if is_identity == "YES"]
        jsonb = {i for i, c in enumerate(columns) if types.get(c) == "jsonb"}
        changed = 0
        names = ", ".join(f'"{c}"' for c in columns)
        with con.raw.cursor().copy(f'COPY "{table}" ({names}) FROM STDIN'.encode()) as copy:
            for row in rows:
                fixed, n = _holdable(row, jsonb)
                changed += n
                copy.write_row(fixed)
        for column in identity:  # the next row made here takes the next number, not 1
            con.execute(
                f'SELECT setval(pg_get_serial_sequence(?, ?), coalesce(max("{column}"), 0) + 1, '
                f'false) FROM "{table}"',
                (table, column),
            )
        return changed

    def close(self) -> None:
        self._pool.close()


def PostgresStore(url: str, *, pool_size: int | None = None) -> SqlStore:  # named as SqliteStore is
    """The store on the PostgreSQL database at ``url`` (migrated to this server's schema)."""
    return SqlStore(PostgresEngine(url, pool_size=pool_size))
