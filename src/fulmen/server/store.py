"""The store's interface: what the HTTP layer asks of a database, whatever the database is.

One implementation, ``fulmen.server._sqlstore.SqlStore`` (all the SQL), on one of two engines:
SQLite (``fulmen.server._sqlite``: one file, the embedded default) or PostgreSQL
(``fulmen.server._postgres``: shared by several server processes). ``open_store`` picks one from
the ``--database`` URL. Blobs (run files, artifact files) live behind ``BlobStore``
(``fulmen.server._blobs``), addressed by their SHA-256 digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from fulmen.sweep._sql import Database

__all__ = [
    "Conflict",
    "Filter",
    "HistoryQuery",
    "Ingested",
    "NotFound",
    "RunQuery",
    "Store",
    "StoreFull",
    "StoreUnavailable",
    "open_store",
]


class NotFound(LookupError):
    """The entity, project, run, artifact or file does not exist (HTTP 404)."""


class Conflict(ValueError):
    """The request contradicts what the store holds (HTTP 409)."""


class StoreFull(OSError):
    """The database cannot grow: its disk (or its size limit) is full (HTTP 503, retried later).
    Nothing of the write that met it was kept; the same write succeeds once there is room."""


# the run's own fields a filter or a sort may name (besides config.<path> and summary.<path>)
RUN_FIELDS = ("id", "name", "state", "group", "job_type", "tags", "created", "updated", "runtime",
              "rows")  # fmt: skip
FILTER_OPS = ("=", "!=", "<", "<=", ">", ">=", "~")


class StoreUnavailable(OSError):
    """The database does not answer (down, restarting, unreachable, out of connections), or
    broke off the write (a deadlock): nothing of that write was kept; answered 503 with
    ``Retry-After``, and the same request succeeds once the database is back."""


@dataclass(frozen=True)
class Filter:
    """One condition on runs: ``field`` is ``config.<path>`` or ``summary.<path>`` (dots go into
    nested objects) or one of ``RUN_FIELDS``; ``op`` one of ``= != < <= > >=`` or ``~`` (contains,
    case-insensitive; on ``tags``: a tag contains); ``value`` a JSON value. On ``tags``, ``=`` and
    ``!=`` mean the run has (has not) that tag. A run without the value matches no comparison but
    ``= null``."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class RunQuery:
    """Which runs of a project, in which order, which page."""

    states: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()  # only these runs (none: every run)
    tags: tuple[str, ...] = ()  # every tag must be on the run
    group: str | None = None
    search: str | None = None  # a substring of the name or id (case-insensitive)
    filters: tuple[Filter, ...] = ()
    sort: str = "-created"  # a RUN_FIELDS name but tags (or run_id), config.<path>, summary.<path>
    limit: int = 50
    offset: int = 0
    # only these config./summary. paths in each run's config and summary (None: all of them)
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class HistoryQuery:
    """Chart data: ``keys`` of ``runs`` in ``buckets`` buckets over ``[lo, hi]`` of ``x``."""

    runs: tuple[str, ...]
    keys: tuple[str, ...]
    buckets: int = 1000
    x: str = "_step"  # _step, _runtime, _timestamp, or any metric (trainer/global_step, epoch)
    lo: float | None = None
    hi: float | None = None


@dataclass
class Ingested:
    """What one ingest batch did: the highest contiguous sequence held after it, and the records
    it refused (each ``{"seq", "kind", "field", "reason"}``; skipped, yet counted in ``held``)."""

    held: int
    refused: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunPage:
    total: int
    runs: list[dict[str, Any]] = field(default_factory=list)


def column_paths(docs: Iterator[dict[str, Any]]) -> dict[str, int]:
    """Every leaf path of ``docs`` (config or summary objects) dotted (``model.depth``), with the
    number of docs that have it. Nested objects are walked, except media values (a ``_type`` key)
    and empty objects, which are leaves like lists and scalars. Shared by the stores: the runs
    table's column picker lists these."""
    counts: dict[str, int] = {}

    def walk(obj: dict[str, Any], prefix: str) -> None:
        for key, value in obj.items():
            path = prefix + key
            if isinstance(value, dict) and value and "_type" not in value:
                walk(value, path + ".")
            else:
                counts[path] = counts.get(path, 0) + 1

    for doc in docs:
        if isinstance(doc, dict):
            walk(doc, "")
    return dict(sorted(counts.items()))


class Store(Protocol):
    """Every read and write the server makes. Names are validated before they get here."""

    def ingest(self, entity: str, project: str, run_id: str, body: bytes) -> int:
        """Apply a batch of run-log frames; answer the highest contiguous sequence held."""
        ...

    def ingest_batch(self, entity: str, project: str, run_id: str, body: bytes) -> Ingested:
        """``ingest``, also saying which records were refused (bad values: see ``_ingest``)."""
        ...

    def held(self, entity: str, project: str, run_id: str) -> int: ...

    def heartbeat(self, entity: str, project: str, run_id: str) -> None:
        """The run's client is alive (it has nothing new to send)."""
        ...

    def mark_crashed(self, entity: str, project: str, run_id: str, last_seq: int) -> str: ...

    def entities(self, only: str | None) -> list[dict[str, Any]]: ...

    def projects(self, entity: str) -> list[dict[str, Any]]: ...

    def runs(self, entity: str, project: str, query: RunQuery) -> RunPage: ...

    def columns(self, entity: str, project: str) -> dict[str, Any]:
        """``{"config", "summary", "history"}``: top-level keys with their number of runs, and
        ``"paths": {"config", "summary"}``, the leaf paths (``column_paths``)."""
        ...

    def run(self, entity: str, project: str, run_id: str) -> dict[str, Any]: ...

    def history(self, entity: str, project: str, query: HistoryQuery) -> list[dict[str, Any]]: ...

    def values(
        self, entity: str, project: str, run_id: str, key: str, lo: float, hi: float, limit: int
    ) -> list[dict[str, Any]]:
        """A key's non-numeric history (strings, media, histograms) by row, steps in [lo, hi]."""
        ...

    def frames(self, entity: str, project: str, run_id: str) -> Iterator[bytes]: ...

    def console(
        self, entity: str, project: str, run_id: str, after: int, limit: int
    ) -> list[dict[str, Any]]: ...

    def system(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]: ...

    def files(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]: ...

    def file_digest(self, entity: str, project: str, run_id: str, path: str) -> str: ...

    def put_file(
        self, entity: str, project: str, run_id: str, path: str, digest: str, size: int
    ) -> None: ...

    def missing_blobs(self, entity: str, digests: list[str]) -> list[str]: ...

    def add_blob(self, entity: str, digest: str, size: int) -> None: ...

    def has_blob(self, entity: str, digest: str) -> bool: ...

    def blob_bytes(self, entity: str) -> int:
        """The bytes of every blob ``entity`` holds (its files and artifacts: its quota's use)."""
        ...

    def artifact_collections(self, entity: str, project: str) -> list[dict[str, Any]]: ...

    def artifact_versions(self, entity: str, project: str, name: str) -> list[dict[str, Any]]: ...

    def artifact(self, entity: str, project: str, name: str, version: str) -> dict[str, Any]: ...

    def run_artifacts(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]: ...

    def set_manifest(
        self,
        entity: str,
        project: str,
        name: str,
        digest: str,
        entries: dict[str, Any],
        metadata: dict[str, Any],
    ) -> str: ...

    def reports(self, entity: str, project: str) -> list[dict[str, Any]]:
        """The project's reports without their blocks (id, title, description, author, created,
        updated), the last updated first."""
        ...

    def report(self, entity: str, project: str, report_id: str) -> dict[str, Any]:
        """One report with its blocks, or ``NotFound``."""
        ...

    def report_exists(self, entity: str, project: str, report_id: str) -> bool: ...

    def save_report(
        self, entity: str, project: str, report: dict[str, Any], snapshots: dict[str, Any]
    ) -> None:
        """Create or replace a report (``_store_reports.ReportSql.save``: ``snapshots`` maps each
        frozen run set to its data, or to None to keep what is stored; others are dropped)."""
        ...

    def report_snapshots(self, entity: str, project: str, report_id: str) -> dict[str, Any]:
        """The data of the report's frozen run sets, by run set id."""
        ...

    def delete_report(self, entity: str, project: str, report_id: str) -> None:
        """Delete the report and its snapshots, or ``NotFound``."""
        ...

    def create_key(self, entity: str) -> str: ...

    def entity_for_key(self, key: str) -> str | None: ...

    def has_keys(self) -> bool:
        """Whether any API key exists (a server that requires keys says so at start)."""
        ...

    def create_anonymous(self) -> str: ...

    def anonymous_exists(self, entity: str) -> bool: ...

    def sweep_database(self) -> Database:
        """The store's transactions for the sweep tables (``fulmen.sweep._sql``, whose SQL runs
        on them; the sweep logic is ``fulmen.sweep._store.SweepStore``)."""
        ...

    def workspace(self, entity: str, project: str, owner: str) -> dict[str, Any] | None:
        """The saved layout of a project for ``owner`` (``""``: the project's own, ``key:<hash>``
        a key's) as ``{"layout", "updated"}``, or None (see ``_workspaces``)."""
        ...

    def put_workspace(self, entity: str, project: str, owner: str, layout: dict[str, Any]) -> float:
        """Save ``layout`` (validated) for ``owner``; answers when (a UNIX time)."""
        ...

    def delete_workspace(self, entity: str, project: str, owner: str) -> None: ...

    def close(self) -> None: ...


def redact(url: str) -> str:
    """A database URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


DATABASE_FORMS = (
    "sqlite:///PATH (a SQLite file; sqlite:////abs/path for an absolute one)",
    "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (postgres:// too)",
)


def parse_database(url: str) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", url)`` for a ``--database`` URL; ValueError that
    names the argument, what was given and the forms it takes."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return "sqlite", url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    shown = url if "@" not in url else url.split("://", 1)[0] + "://..."  # no password shown
    raise ValueError(
        f"--database (FULMEN_DATABASE_URL) {shown!r}: use {' or '.join(DATABASE_FORMS)}; "
        "or leave it out for a SQLite file in the data folder"
    )


def open_store(data: Path, db: str | None = None) -> Store:
    """The store for ``--data DIR`` and ``--database URL`` (``parse_database``; None: the SQLite
    file ``DIR/fulmen.db``)."""
    if db is None:
        from fulmen.server._sqlite import SqliteStore

        return SqliteStore(data / "fulmen.db")
    engine, target = parse_database(db)
    if engine == "sqlite":
        from fulmen.server._sqlite import SqliteStore

        return SqliteStore(Path(target))
    from fulmen.server._postgres import PostgresStore

    return PostgresStore(target)
