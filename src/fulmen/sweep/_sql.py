"""Every SQL statement of a sweep's state, written once for every database that holds sweeps: the
local ``<fulmen dir>/sweeps.db`` (``_local``) and the server's store (``fulmen.server``, whose
migration creates the same ``TABLES``). The logic that runs them is ``_store.SweepStore``.

Portable SQL, so that SQLite and PostgreSQL read it alike: ``?`` placeholders, ``ON CONFLICT``
upserts, JSON as TEXT (read and written by Python, never by SQL functions), ``DOUBLE PRECISION``
and ``BIGINT`` columns, no engine-specific functions.

A database hands the sweep logic a ``Database``: ``write()`` opens one write transaction and
``read()`` one read, each yielding a ``Tx`` whose ``execute(sql, params)`` runs one statement and
returns its rows (``Connections`` makes one from a store's own transaction context managers). How
a write keeps two claims apart is the engine's:

- SQLite: ``write()`` is ``BEGIN IMMEDIATE`` (the file's write lock, taken up front), so every
  claim sees the trials the one before it stored; ``for_update`` is empty.
- PostgreSQL: ``write()`` is ``BEGIN`` and ``for_update`` is ``" FOR UPDATE"``: every
  transaction that changes a sweep starts by reading the sweep's row with it (``sweep_row(...,
  lock=True)``), so claims of one sweep queue on that row while other sweeps go on. The adapter
  turns ``?`` into ``%s``. ``(sweep_id, key)`` and ``(sweep_id, request)`` are unique in both, so
  a repeated configuration or a replayed claim cannot be stored even if the lock were missed.

Tables::

    sweeps(id, entity, project, name, config JSON, state, created, seed, exhausted)
    sweep_trials(sweep_id, number, run_id, params JSON, latent JSON, key, request, state, value,
                 agent, run_dir, attrs JSON, started, ended)    primary key (sweep_id, number)
    sweep_reports(sweep_id, number, step, value)                the metric per iteration
    sweep_agents(id, sweep_id, pid, host, started, seen, ended) seen: the last heartbeat
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

# The first version of the tables (never edited: a change is a new constant, and a new server
# migration). Every statement is idempotent (IF NOT EXISTS), for the local file.
TABLES_V1 = (
    """CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, entity TEXT, project TEXT NOT NULL, name TEXT, config TEXT NOT NULL,
    state TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, seed BIGINT NOT NULL,
    exhausted INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS sweeps_by_project ON sweeps (entity, project, created)",
    """CREATE TABLE IF NOT EXISTS sweep_trials (
    sweep_id TEXT NOT NULL, number INTEGER NOT NULL, run_id TEXT NOT NULL, params TEXT NOT NULL,
    latent TEXT NOT NULL, key TEXT, request TEXT, state TEXT NOT NULL, value DOUBLE PRECISION,
    agent TEXT, run_dir TEXT, attrs TEXT NOT NULL DEFAULT '{}', started DOUBLE PRECISION,
    ended DOUBLE PRECISION, PRIMARY KEY (sweep_id, number))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS sweep_trials_key ON sweep_trials (sweep_id, key)",
    "CREATE UNIQUE INDEX IF NOT EXISTS sweep_trials_request ON sweep_trials (sweep_id, request)",
    "CREATE INDEX IF NOT EXISTS sweep_trials_state ON sweep_trials (sweep_id, state)",
    """CREATE TABLE IF NOT EXISTS sweep_reports (
    sweep_id TEXT NOT NULL, number INTEGER NOT NULL, step INTEGER NOT NULL,
    value DOUBLE PRECISION NOT NULL, PRIMARY KEY (sweep_id, number, step))""",
    """CREATE TABLE IF NOT EXISTS sweep_agents (
    id TEXT PRIMARY KEY, sweep_id TEXT NOT NULL, pid INTEGER, host TEXT,
    started DOUBLE PRECISION, seen DOUBLE PRECISION, ended DOUBLE PRECISION)""",
)
TABLES = TABLES_V1

Row = tuple[Any, ...]


class Tx(Protocol):
    """One open transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; its rows (none for a write)."""
        ...


class Database(Protocol):
    """Where a sweep's state is kept (see the module docstring)."""

    for_update: str  # appended to the SELECT of a sweep's row in a write ("" or " FOR UPDATE")

    def write(self) -> AbstractContextManager[Tx]:
        """One write transaction: committed at the end, rolled back on an error."""
        ...

    def read(self) -> AbstractContextManager[Tx]:
        """One consistent read."""
        ...


class Connection(Protocol):
    """A connection whose ``execute(sql, params)`` returns a DB-API cursor and takes ``?``
    placeholders: ``sqlite3``'s, or one that rewrites them for psycopg (``%s``)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...


class CursorTx:
    """``Tx`` on a ``Connection``."""

    def __init__(self, con: Connection) -> None:
        self.con = con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self.con.execute(sql, tuple(params))
        # (psycopg refuses fetchall() after a statement without rows; sqlite3 answers [])
        return list(cursor.fetchall()) if cursor.description is not None else []


class Connections:
    """``Database`` from a store's own transactions: ``write()`` and ``read()`` are context
    managers yielding a ``Connection`` (in one write transaction; for one read). The server's
    store gives its sweeps one of these: SQLite with ``for_update=""``, PostgreSQL with
    ``for_update=" FOR UPDATE"``."""

    def __init__(
        self,
        write: Callable[[], AbstractContextManager[Connection]],
        read: Callable[[], AbstractContextManager[Connection]],
        for_update: str = "",
    ) -> None:
        self._write, self._read, self.for_update = write, read, for_update

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        with self._write() as con:
            yield CursorTx(con)

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with self._read() as con:
            yield CursorTx(con)


@contextlib.contextmanager
def sqlite_snapshot(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``con`` in one deferred transaction (a consistent snapshot under WAL) for a read."""
    own = not con.in_transaction  # (inside a transaction already: that one is the snapshot)
    if own:
        con.execute("BEGIN")
    try:
        yield con
    finally:
        if own and con.in_transaction:
            con.execute("COMMIT")


class SqliteFile:
    """``Database`` on one SQLite file shared by processes (the local ``sweeps.db``): one
    connection per object, shared by its threads under a lock; ``BEGIN IMMEDIATE`` writes."""

    for_update = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = threading.RLock()
        self._con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA busy_timeout = 60000")
        with contextlib.suppress(sqlite3.OperationalError):  # another process switched it first
            self._con.execute("PRAGMA journal_mode = WAL")
        with self.write() as tx:
            _upgrade_first_layout(tx)
            for statement in TABLES:
                tx.execute(statement)

    def close(self) -> None:
        with self._mutex:
            self._con.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        with self._mutex:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield CursorTx(self._con)
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with self._mutex, sqlite_snapshot(self._con) as con:
            yield CursorTx(con)


def _upgrade_first_layout(tx: Tx) -> None:
    """A sweeps.db of the first local controller (tables ``trials``, ``reports``, ``agents``)
    gets today's names and columns."""
    names = {r[0] for r in tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "trials" not in names or "sweep_trials" in names:
        return
    for old, new in (("trials", "sweep_trials"), ("reports", "sweep_reports"),
                     ("agents", "sweep_agents")):  # fmt: skip
        tx.execute(f"ALTER TABLE {old} RENAME TO {new}")
    tx.execute("ALTER TABLE sweep_trials ADD COLUMN request TEXT")
    tx.execute("ALTER TABLE sweep_agents ADD COLUMN seen DOUBLE PRECISION")
    tx.execute("DROP INDEX IF EXISTS trials_key")
    tx.execute("DROP INDEX IF EXISTS trials_state")


# --- sweeps ----------------------------------------------------------------------------------

SWEEP_COLUMNS = "id, entity, project, name, config, state, created, seed, exhausted"


def sweep_row(tx: Tx, sweep_id: str, lock: str = "") -> Row | None:
    """The sweep's row (``SWEEP_COLUMNS``); ``lock``: the database's ``for_update`` in a write."""
    rows = tx.execute(f"SELECT {SWEEP_COLUMNS} FROM sweeps WHERE id = ?{lock}", (sweep_id,))
    return rows[0] if rows else None


def sweep_rows(tx: Tx, entity: str | None, project: str | None) -> list[Row]:
    """Every sweep (of ``entity``, of ``project`` when given), oldest first."""
    where, params = [], []
    if entity is not None:
        where.append("entity = ?")
        params.append(entity)
    if project is not None:
        where.append("project = ?")
        params.append(project)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return tx.execute(f"SELECT {SWEEP_COLUMNS} FROM sweeps{clause} ORDER BY created, id", params)


def insert_sweep(tx: Tx, row: Row) -> None:
    """``row``: ``SWEEP_COLUMNS`` in order."""
    tx.execute(f"INSERT INTO sweeps ({SWEEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


def set_sweep_state(tx: Tx, sweep_id: str, state: str) -> None:
    tx.execute("UPDATE sweeps SET state = ? WHERE id = ?", (state, sweep_id))


def set_exhausted(tx: Tx, sweep_id: str) -> None:
    tx.execute("UPDATE sweeps SET exhausted = 1 WHERE id = ?", (sweep_id,))


def finish_if_done(tx: Tx, sweep_id: str) -> None:
    """A running, exhausted sweep with no running trial is finished."""
    tx.execute(
        "UPDATE sweeps SET state = 'finished' WHERE id = ? AND state = 'running'"
        " AND exhausted = 1 AND NOT EXISTS (SELECT 1 FROM sweep_trials"
        " WHERE sweep_id = ? AND state = 'running')",
        (sweep_id, sweep_id),
    )


def state_counts(tx: Tx, sweep_ids: Sequence[str]) -> list[Row]:
    """(sweep id, trial state, count) of the sweeps ``sweep_ids``."""
    out: list[Row] = []
    for i in range(0, len(sweep_ids), 500):
        chunk = sweep_ids[i : i + 500]
        out += tx.execute(
            f"SELECT sweep_id, state, COUNT(*) FROM sweep_trials WHERE sweep_id IN"
            f" ({','.join('?' * len(chunk))}) GROUP BY sweep_id, state",
            chunk,
        )
    return out


# --- trials ----------------------------------------------------------------------------------

TRIAL_COLUMNS = (
    "number, run_id, params, state, value, latent, attrs, agent, run_dir, started, ended"
)


def trial_count(tx: Tx, sweep_id: str) -> int:
    """How many trials the sweep has (trial numbers are 0, 1, ... in claim order)."""
    rows = tx.execute("SELECT COUNT(*) FROM sweep_trials WHERE sweep_id = ?", (sweep_id,))
    return int(rows[0][0])


def trial_state(tx: Tx, sweep_id: str, number: int) -> str | None:
    rows = tx.execute(
        "SELECT state FROM sweep_trials WHERE sweep_id = ? AND number = ?", (sweep_id, number)
    )
    return str(rows[0][0]) if rows else None


def trial_states(tx: Tx, sweep_id: str) -> list[Row]:
    """(number, state) of every trial, by number."""
    return tx.execute(
        "SELECT number, state FROM sweep_trials WHERE sweep_id = ? ORDER BY number", (sweep_id,)
    )


def claimed_by_request(tx: Tx, sweep_id: str, request: str) -> int | None:
    """The number of the trial that claim ``request`` got (a replayed claim), if any."""
    rows = tx.execute(
        "SELECT number FROM sweep_trials WHERE sweep_id = ? AND request = ?", (sweep_id, request)
    )
    return int(rows[0][0]) if rows else None


def trial_keys(tx: Tx, sweep_id: str) -> set[str]:
    """The configuration keys taken (grid and random never repeat one)."""
    rows = tx.execute(
        "SELECT key FROM sweep_trials WHERE sweep_id = ? AND key IS NOT NULL", (sweep_id,)
    )
    return {str(r[0]) for r in rows}


def insert_trial(tx: Tx, row: Row) -> None:
    """``row``: sweep_id, number, run_id, params, latent, key, request, state, value, agent,
    run_dir, started, ended."""
    tx.execute(
        "INSERT INTO sweep_trials (sweep_id, number, run_id, params, latent, key, request, state,"
        " value, agent, run_dir, started, ended) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row,
    )


def settle_trial(
    tx: Tx,
    sweep_id: str,
    number: int,
    state: str,
    value: float | None,
    ended: float,
    run_dir: str | None,
) -> None:
    tx.execute(
        "UPDATE sweep_trials SET state = ?, value = ?, ended = ?, run_dir = COALESCE(?, run_dir)"
        " WHERE sweep_id = ? AND number = ?",
        (state, value, ended, run_dir, sweep_id, number),
    )


def set_trial_attrs(tx: Tx, sweep_id: str, number: int, attrs: str) -> None:
    tx.execute(
        "UPDATE sweep_trials SET attrs = ? WHERE sweep_id = ? AND number = ?",
        (attrs, sweep_id, number),
    )


def running_trials(tx: Tx, sweep_id: str) -> list[Row]:
    """(number, run_id, agent, run_dir, the agent's seen, ended) of every running trial."""
    return tx.execute(
        "SELECT t.number, t.run_id, t.agent, t.run_dir, a.seen, a.ended FROM sweep_trials t"
        " LEFT JOIN sweep_agents a ON a.id = t.agent WHERE t.sweep_id = ? AND t.state = 'running'"
        " ORDER BY t.number",
        (sweep_id,),
    )


def trial_rows(
    tx: Tx, sweep_id: str, numbers: Sequence[int] | None, reports: bool
) -> tuple[list[Row], list[Row]]:
    """(``TRIAL_COLUMNS`` rows, (number, step, value) report rows) of the trials ``numbers``
    (None: all), in chunks of 500 numbers."""
    chunks: list[Sequence[int] | None] = [None]
    if numbers is not None:
        chunks = [numbers[i : i + 500] for i in range(0, len(numbers), 500)]
    rows: list[Row] = []
    found: list[Row] = []
    for chunk in chunks:
        where = "" if chunk is None else f" AND number IN ({','.join('?' * len(chunk))})"
        params = (sweep_id, *(chunk or ()))
        rows += tx.execute(
            f"SELECT {TRIAL_COLUMNS} FROM sweep_trials WHERE sweep_id = ?{where}", params
        )
        if reports:
            found += tx.execute(
                f"SELECT number, step, value FROM sweep_reports WHERE sweep_id = ?{where}", params
            )
    return rows, found


def upsert_report(tx: Tx, sweep_id: str, number: int, step: int, value: float) -> None:
    tx.execute(
        "INSERT INTO sweep_reports (sweep_id, number, step, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (sweep_id, number, step) DO UPDATE SET value = excluded.value",
        (sweep_id, number, step, value),
    )


# --- agents ----------------------------------------------------------------------------------


def insert_agent(
    tx: Tx, agent_id: str, sweep_id: str, pid: int | None, host: str | None, now: float
) -> None:
    tx.execute(
        "INSERT INTO sweep_agents (id, sweep_id, pid, host, started, seen) VALUES (?,?,?,?,?,?)",
        (agent_id, sweep_id, pid, host, now, now),
    )


def agent_row(tx: Tx, agent_id: str) -> Row | None:
    """(id, sweep_id, pid, host, started, seen, ended) of the agent."""
    rows = tx.execute(
        "SELECT id, sweep_id, pid, host, started, seen, ended FROM sweep_agents WHERE id = ?",
        (agent_id,),
    )
    return rows[0] if rows else None


def agent_rows(tx: Tx, sweep_id: str) -> list[Row]:
    """(id, sweep_id, pid, host, started, seen, ended) of every agent of the sweep, oldest first."""
    return tx.execute(
        "SELECT id, sweep_id, pid, host, started, seen, ended FROM sweep_agents"
        " WHERE sweep_id = ? ORDER BY started, id",
        (sweep_id,),
    )


def agent_seen(tx: Tx, agent_id: str, now: float) -> None:
    tx.execute("UPDATE sweep_agents SET seen = ? WHERE id = ?", (now, agent_id))


def end_agent(tx: Tx, agent_id: str, now: float) -> None:
    tx.execute("UPDATE sweep_agents SET ended = ? WHERE id = ? AND ended IS NULL", (now, agent_id))
