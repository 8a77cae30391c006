"""The store's schema as an ordered list of migrations, applied at start (``_sqlite.migrate``,
``_postgres.migrate``).

The version a store is at is stored in the store itself (SQLite: ``PRAGMA user_version``;
PostgreSQL: the table ``schema_version``, one row per migration applied). A new store runs every
migration; an existing one runs those past its version; a store at a version this list does not
reach was written by a newer server and is refused with ``StoreTooNew``, which names both versions.
Migrations are never edited once released: a change to the schema is a new entry at the end.

Each migration holds its statements per engine, ``"sqlite"`` and ``"postgresql"``, side by side,
so the list and its numbering are the same for every store (a test checks that every migration
has both). The two say the same in each engine's words: PostgreSQL's ``REAL`` is 4 bytes, so
numbers are ``DOUBLE PRECISION`` there, integers ``BIGINT``, bytes ``BYTEA``, and the JSON the runs
query looks into (``config``, ``summary``, ``tags``) ``JSONB``.

Migration 1 is the schema the server had before it had versions; its statements are
``CREATE ... IF NOT EXISTS`` so that a data folder made then (``user_version`` 0, tables present)
takes it as a no-op and is stamped version 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fulmen.sweep._sql import TABLES_V1 as SWEEP_TABLES_V1


class StoreTooNew(RuntimeError):
    """The store was written by a newer server (its schema version is past this server's)."""

    def __init__(self, where: str, found: int, supported: int) -> None:
        super().__init__(
            f"the store at {where} has schema version {found}, newer than this server's "
            f"{supported}: run the fulmen version that wrote it (or a newer one)"
        )
        self.found = found
        self.supported = supported


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``version`` (1, 2, ...), what it does, its statements by engine."""

    version: int
    title: str
    sql: Mapping[str, tuple[str, ...]]

    def statements(self, engine: str) -> tuple[str, ...]:
        if engine not in self.sql:
            raise ValueError(
                f"migration {self.version} ({self.title}) has no statements for engine "
                f"{engine!r}; it has {sorted(self.sql)}"
            )
        return self.sql[engine]


_V1_SQLITE = (
    """
CREATE TABLE IF NOT EXISTS runs (
    rid INTEGER PRIMARY KEY,
    entity TEXT NOT NULL, project TEXT NOT NULL, run_id TEXT NOT NULL,
    name TEXT, grp TEXT, job_type TEXT, tags TEXT NOT NULL DEFAULT '[]', notes TEXT,
    state TEXT NOT NULL DEFAULT 'running',
    created REAL NOT NULL, updated REAL NOT NULL, runtime REAL NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0, rows INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL DEFAULT '{}', summary TEXT NOT NULL DEFAULT '{}',
    meta TEXT NOT NULL DEFAULT '{}', exit TEXT, metrics TEXT NOT NULL DEFAULT '[]',
    ingest_state TEXT,
    UNIQUE (entity, project, run_id)
)
""",
    "CREATE INDEX IF NOT EXISTS runs_by_created ON runs (entity, project, created)",
    """
CREATE TABLE IF NOT EXISTS segments (
    rid INTEGER NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (rid, first_seq)
)
""",
    """
CREATE TABLE IF NOT EXISTS series (
    rid INTEGER NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL, last_ord REAL NOT NULL,
    PRIMARY KEY (rid, key)
) WITHOUT ROWID
""",
    """
CREATE TABLE IF NOT EXISTS pieces (
    rid INTEGER NOT NULL, key TEXT NOT NULL, piece INTEGER NOT NULL, n INTEGER NOT NULL,
    ord_first REAL NOT NULL, smin REAL, smax REAL, rmin REAL, rmax REAL, tmin REAL, tmax REAL,
    l3 BLOB NOT NULL, l2 BLOB NOT NULL, l1 BLOB NOT NULL  -- small first: reading l2 or l3
)                                                       -- never walks l1's overflow pages
""",
    "CREATE UNIQUE INDEX IF NOT EXISTS pieces_key ON pieces (rid, key, piece)",
    """
CREATE TABLE IF NOT EXISTS overview (
    rid INTEGER NOT NULL, key TEXT NOT NULL, level INTEGER NOT NULL, block INTEGER NOT NULL,
    n INTEGER NOT NULL, smin REAL, smax REAL, rmin REAL, rmax REAL, tmin REAL, tmax REAL,
    data BLOB NOT NULL
)
""",
    "CREATE UNIQUE INDEX IF NOT EXISTS overview_key ON overview (rid, key, level, block)",
    """
CREATE TABLE IF NOT EXISTS points (
    rid INTEGER NOT NULL, key TEXT NOT NULL, piece INTEGER NOT NULL, data BLOB NOT NULL
)
""",
    "CREATE UNIQUE INDEX IF NOT EXISTS points_key ON points (rid, key, piece)",
    """
CREATE TABLE IF NOT EXISTS other_values (
    rid INTEGER NOT NULL, key TEXT NOT NULL, ordinal INTEGER NOT NULL, step INTEGER NOT NULL,
    runtime REAL, timestamp REAL, value TEXT NOT NULL, PRIMARY KEY (rid, key, ordinal)
)
""",
    """
CREATE TABLE IF NOT EXISTS console (
    rid INTEGER NOT NULL, seq INTEGER NOT NULL, stream TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (rid, seq)
)
""",
    """
CREATE TABLE IF NOT EXISTS stats (
    rid INTEGER NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (rid, seq)
)
""",
    """
CREATE TABLE IF NOT EXISTS files (
    rid INTEGER NOT NULL, path TEXT NOT NULL, type TEXT, size INTEGER, digest TEXT,
    PRIMARY KEY (rid, path)
)
""",
    """
CREATE TABLE IF NOT EXISTS artifacts (
    aid INTEGER PRIMARY KEY, entity TEXT NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT, version INTEGER NOT NULL, digest TEXT, metadata TEXT NOT NULL DEFAULT '{}',
    entries TEXT NOT NULL DEFAULT '{}', run_id TEXT, created REAL NOT NULL,
    UNIQUE (entity, project, name, version)
)
""",
    """
CREATE TABLE IF NOT EXISTS aliases (
    entity TEXT NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL, alias TEXT NOT NULL,
    version INTEGER NOT NULL, PRIMARY KEY (entity, project, name, alias)
)
""",
    """
CREATE TABLE IF NOT EXISTS blobs (
    entity TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (entity, digest)
) WITHOUT ROWID
""",
    """
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY, entity TEXT NOT NULL, created REAL NOT NULL
)
""",
    "CREATE TABLE IF NOT EXISTS anonymous (hash TEXT PRIMARY KEY, created REAL NOT NULL)",
)

_V1_POSTGRESQL = (
    """
CREATE TABLE runs (
    rid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    entity TEXT NOT NULL, project TEXT NOT NULL, run_id TEXT NOT NULL,
    name TEXT, grp TEXT, job_type TEXT, tags JSONB NOT NULL DEFAULT '[]', notes TEXT,
    state TEXT NOT NULL DEFAULT 'running',
    created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL,
    runtime DOUBLE PRECISION NOT NULL DEFAULT 0,
    held BIGINT NOT NULL DEFAULT 0, rows BIGINT NOT NULL DEFAULT 0,
    config JSONB NOT NULL DEFAULT '{}', summary JSONB NOT NULL DEFAULT '{}',
    meta TEXT NOT NULL DEFAULT '{}', exit TEXT, metrics TEXT NOT NULL DEFAULT '[]',
    ingest_state TEXT,
    UNIQUE (entity, project, run_id)
)
""",
    "CREATE INDEX runs_by_created ON runs (entity, project, created)",
    # bytes that do not compress (packed floats) are kept out of line as they are: STORAGE
    # EXTERNAL spares every write a futile compression and every read its undoing
    """
CREATE TABLE segments (
    rid BIGINT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, data BYTEA NOT NULL,
    PRIMARY KEY (rid, first_seq)
)
""",
    "ALTER TABLE segments ALTER COLUMN data SET STORAGE EXTERNAL",
    """
CREATE TABLE series (
    rid BIGINT NOT NULL, key TEXT NOT NULL, n BIGINT NOT NULL, last_ord DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (rid, key)
)
""",
    """
CREATE TABLE pieces (
    rid BIGINT NOT NULL, key TEXT NOT NULL, piece BIGINT NOT NULL, n BIGINT NOT NULL,
    ord_first DOUBLE PRECISION NOT NULL,
    smin DOUBLE PRECISION, smax DOUBLE PRECISION, rmin DOUBLE PRECISION, rmax DOUBLE PRECISION,
    tmin DOUBLE PRECISION, tmax DOUBLE PRECISION,
    l3 BYTEA NOT NULL, l2 BYTEA NOT NULL, l1 BYTEA NOT NULL
)
""",
    "ALTER TABLE pieces ALTER COLUMN l1 SET STORAGE EXTERNAL",
    "ALTER TABLE pieces ALTER COLUMN l2 SET STORAGE EXTERNAL",
    "CREATE UNIQUE INDEX pieces_key ON pieces (rid, key, piece)",
    """
CREATE TABLE overview (
    rid BIGINT NOT NULL, key TEXT NOT NULL, level INTEGER NOT NULL, block BIGINT NOT NULL,
    n BIGINT NOT NULL,
    smin DOUBLE PRECISION, smax DOUBLE PRECISION, rmin DOUBLE PRECISION, rmax DOUBLE PRECISION,
    tmin DOUBLE PRECISION, tmax DOUBLE PRECISION,
    data BYTEA NOT NULL
)
""",
    "ALTER TABLE overview ALTER COLUMN data SET STORAGE EXTERNAL",
    "CREATE UNIQUE INDEX overview_key ON overview (rid, key, level, block)",
    "CREATE TABLE points (rid BIGINT NOT NULL, key TEXT NOT NULL, piece BIGINT NOT NULL,"
    " data BYTEA NOT NULL)",
    "ALTER TABLE points ALTER COLUMN data SET STORAGE EXTERNAL",
    "CREATE UNIQUE INDEX points_key ON points (rid, key, piece)",
    """
CREATE TABLE other_values (
    rid BIGINT NOT NULL, key TEXT NOT NULL, ordinal BIGINT NOT NULL, step BIGINT NOT NULL,
    runtime DOUBLE PRECISION, timestamp DOUBLE PRECISION, value TEXT NOT NULL,
    PRIMARY KEY (rid, key, ordinal)
)
""",
    """
CREATE TABLE console (
    rid BIGINT NOT NULL, seq BIGINT NOT NULL, stream TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (rid, seq)
)
""",
    """
CREATE TABLE stats (
    rid BIGINT NOT NULL, seq BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (rid, seq)
)
""",
    """
CREATE TABLE files (
    rid BIGINT NOT NULL, path TEXT NOT NULL, type TEXT, size BIGINT, digest TEXT,
    PRIMARY KEY (rid, path)
)
""",
    """
CREATE TABLE artifacts (
    aid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    entity TEXT NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT, version BIGINT NOT NULL, digest TEXT, metadata TEXT NOT NULL DEFAULT '{}',
    entries TEXT NOT NULL DEFAULT '{}', run_id TEXT, created DOUBLE PRECISION NOT NULL,
    UNIQUE (entity, project, name, version)
)
""",
    """
CREATE TABLE aliases (
    entity TEXT NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL, alias TEXT NOT NULL,
    version BIGINT NOT NULL, PRIMARY KEY (entity, project, name, alias)
)
""",
    """
CREATE TABLE blobs (
    entity TEXT NOT NULL, digest TEXT NOT NULL, size BIGINT NOT NULL,
    PRIMARY KEY (entity, digest)
)
""",
    """
CREATE TABLE api_keys (
    hash TEXT PRIMARY KEY, entity TEXT NOT NULL, created DOUBLE PRECISION NOT NULL
)
""",
    "CREATE TABLE anonymous (hash TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL)",
)

# saved workspaces (_workspaces, _store_workspaces): portable SQL, the layout as JSON text
_WORKSPACES = (
    """
CREATE TABLE IF NOT EXISTS workspaces (
    entity TEXT NOT NULL, project TEXT NOT NULL, owner TEXT NOT NULL,
    layout TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (entity, project, owner)
)
""",
)

# reports (``_store_reports``; portable SQL): one row per report, its blocks as JSON text; the
# frozen run sets' snapshots (run list and panel data, JSON text) in their own table, so that
# listing or reading a report never reads them
_REPORTS = (
    """
CREATE TABLE IF NOT EXISTS reports (
    entity TEXT NOT NULL, project TEXT NOT NULL, report_id TEXT NOT NULL,
    title TEXT NOT NULL, description TEXT NOT NULL, blocks TEXT NOT NULL, author TEXT,
    created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (entity, project, report_id)
)
""",
    """
CREATE TABLE IF NOT EXISTS report_snapshots (
    entity TEXT NOT NULL, project TEXT NOT NULL, report_id TEXT NOT NULL, runset_id TEXT NOT NULL,
    data TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (entity, project, report_id, runset_id)
)
""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the schema the server had before versions",
        {"sqlite": _V1_SQLITE, "postgresql": _V1_POSTGRESQL},
    ),
    # the sweep tables, as fulmen.sweep._sql writes them (portable SQL: PostgreSQL's are the same)
    Migration(
        2,
        "sweeps, their trials, metric reports and agents",
        {"sqlite": SWEEP_TABLES_V1, "postgresql": SWEEP_TABLES_V1},
    ),
    Migration(
        3,
        "saved workspaces (panel layouts per project and owner)",
        {"sqlite": _WORKSPACES, "postgresql": _WORKSPACES},
    ),
    Migration(
        4,
        "reports and their frozen run sets",
        {"sqlite": _REPORTS, "postgresql": _REPORTS},
    ),
)

ENGINES = ("sqlite", "postgresql")  # every migration has statements for each


def check(migrations: tuple[Migration, ...], engines: tuple[str, ...] = ENGINES) -> None:
    """Versions are 1, 2, 3, ... in order, each with statements for every one of ``engines``
    (a test runs this on ``MIGRATIONS``)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"migration versions must be 1, 2, ... in order; got {versions}")
    for m in migrations:
        lacking = [e for e in engines if e not in m.sql]
        if lacking:
            raise ValueError(
                f"migration {m.version} ({m.title}) has no statements for {', '.join(lacking)}; "
                f"every migration needs them for {', '.join(engines)}"
            )
