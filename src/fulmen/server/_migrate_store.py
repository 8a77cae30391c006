"""``fulmen server migrate-store``: copy a whole store to another database (SQLite to PostgreSQL,
the usual move from one machine to a team's server; any engine to any other), blobs included, and
verify what was copied.

The order, and why:

1. Both stores are opened, so both are at this server's schema (the source is migrated in place
   first, as ``fulmen server`` would at its start). The target must be empty (no row in any
   table): a copy never merges two stores.
2. The blobs go first, one at a time and streamed, through the blob stores' own interface
   (``_blobs.BlobStore``: a folder, or an object store): each is checked against its digest as it
   is written, and one the target already has is skipped. When source and target blob stores are
   the same (the default: the blobs stay where they are) only their presence is checked.
3. Every table is copied in one write transaction of the target (batches of rows; PostgreSQL:
   ``COPY``), so a copy that fails (or is killed) leaves the target as empty as it found it, and
   running the command again is the retry.
4. Each table's row count in the target is compared with the source's; any difference is an
   error that names the table.

No SQL here: the stores' ``counts``, ``blob_digests`` and their engines' ``tables``, ``scan`` and
``load_rows`` do the reading and writing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fulmen.server import _blobs
from fulmen.server._blobs import BlobStore, FileBlobs, copy_blob
from fulmen.server._sqlstore import SqlStore
from fulmen.server.store import open_store, parse_database, redact

__all__ = ["MigrateError", "Migrated", "migrate_store"]


class MigrateError(RuntimeError):
    """The copy cannot start, or did not come out whole (the message says which part)."""


@dataclass
class Migrated:
    """What a copy did: rows per table (each verified), blobs copied and already there, values
    changed to what the target holds (text with NUL, JSON that was not JSON)."""

    rows: dict[str, int] = field(default_factory=dict)
    blobs_copied: int = 0
    blobs_present: int = 0
    changed: int = 0


def open_blobs(setting: str | None, data: Path, option: str = "--from-blobs") -> BlobStore:
    """The blob store for ``--from-blobs`` / ``--to-blobs``, as ``fulmen server --blobs`` takes
    it: a folder (default ``DATA/blobs``), ``file:///PATH`` or ``s3://BUCKET[/PREFIX]`` (an
    S3-compatible object store; endpoint and credentials from the AWS settings)."""
    try:
        return _blobs.open_blobs(setting, data)
    except ValueError as exc:
        raise MigrateError(str(exc).replace("--blobs", option)) from None


def _same_blobs(a: BlobStore, b: BlobStore) -> bool:
    """Whether two blob stores are one (then the blobs are only checked, not copied)."""
    if a is b:
        return True
    if isinstance(a, FileBlobs) and isinstance(b, FileBlobs):
        return Path(a.root).resolve() == Path(b.root).resolve()
    return not isinstance(a, FileBlobs) and a.describe() == b.describe()


def _open(url: str, data: Path, role: str) -> SqlStore:
    try:
        parse_database(url)
    except ValueError as exc:
        raise MigrateError(str(exc).replace("--database (FULMEN_DATABASE_URL)", role)) from None
    store = open_store(data, url)
    assert isinstance(store, SqlStore)
    return store


def _copy_blob(source: BlobStore, target: BlobStore, digest: str, size: int) -> None:
    # the limit: the size the store recorded (a blob that grew since is not this blob)
    copy_blob(source, target, digest, max(size, 0))


def migrate_store(
    source_url: str,
    target_url: str,
    *,
    data: Path,
    source_blobs: BlobStore,
    target_blobs: BlobStore,
    echo: Callable[[str], None] = print,
) -> Migrated:
    """Copy the store at ``source_url`` into the empty store at ``target_url`` with the blobs
    from ``source_blobs`` to ``target_blobs`` (see the module docstring); ``MigrateError`` when
    it cannot (the target is not empty, a blob is missing or wrong, a count differs)."""
    if source_url == target_url:
        raise MigrateError(f"--from and --to are the same database ({redact(source_url)})")
    done = Migrated()
    source = _open(source_url, data, "--from")
    try:
        target = _open(target_url, data, "--to")
        try:
            _copy(source, target, source_blobs, target_blobs, done, echo)
        finally:
            target.close()
    finally:
        source.close()
    return done


def _copy(
    source: SqlStore,
    target: SqlStore,
    source_blobs: BlobStore,
    target_blobs: BlobStore,
    done: Migrated,
    echo: Callable[[str], None],
) -> None:
    where = f"{source.engine.where} -> {target.engine.where}"
    held = {t: n for t, n in target.counts().items() if n}
    if held:
        shown = ", ".join(f"{n} in {t}" for t, n in sorted(held.items()))
        raise MigrateError(
            f"--to {target.engine.where} is not empty ({shown} rows): migrate-store copies into "
            "an empty store only (drop and re-create that database, or name another)"
        )
    missing_tables = sorted(set(source.engine.tables()) - set(target.engine.tables()))
    if missing_tables:
        raise MigrateError(f"--to lacks the tables {', '.join(missing_tables)}: not this schema")
    counts = source.counts()
    echo(f"migrate-store: {where}: {sum(counts.values())} rows in {len(counts)} tables")
    # 2. blobs: checked by digest as they are written, before any row says they are there
    same = _same_blobs(source_blobs, target_blobs)
    for digest, size in source.blob_digests():
        if target_blobs.exists(digest):
            done.blobs_present += 1
            continue
        if same or not source_blobs.exists(digest):
            raise MigrateError(
                f"blob {digest} ({size} bytes) is recorded in the store but not in "
                f"{'the blob store' if same else '--from-blobs'}: its upload never completed "
                "or the blobs were copied without it"
            )
        try:
            _copy_blob(source_blobs, target_blobs, digest, size)
        except ValueError as exc:  # the bytes are not the blob (DigestMismatch, BlobTooLarge)
            raise MigrateError(f"blob {digest} in --from-blobs is damaged: {exc}") from exc
        done.blobs_copied += 1
    echo(f"migrate-store: blobs: {done.blobs_copied} copied, {done.blobs_present} already there")
    # 3. rows: one transaction of the target, so a failure leaves it empty
    with target.engine.write() as con:
        for table in sorted(counts):
            for columns, rows in source.engine.scan(table):
                done.changed += target.engine.load_rows(con, table, columns, rows)
    # 4. verified, table by table
    copied = target.counts()
    wrong = {t: (n, copied.get(t)) for t, n in counts.items() if copied.get(t) != n}
    if wrong:
        shown = ", ".join(f"{t}: {n} in --from, {m} in --to" for t, (n, m) in wrong.items())
        raise MigrateError(f"the copy does not match: {shown}")
    done.rows = copied
    for table, n in sorted(copied.items()):
        echo(f"migrate-store:   {table:<16} {n:>12,} rows (verified)")
    if done.changed:
        echo(
            f"migrate-store: {done.changed} values changed to what {target.engine.name} holds "
            "(text with NUL characters, JSON with NaN or not JSON)"
        )
    echo(f"migrate-store: done; start the server with --database {target.engine.where}")
