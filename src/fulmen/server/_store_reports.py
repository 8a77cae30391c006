"""The reports' SQL, apart from the rest of the store so that every store engine shares it.

``ReportSql`` is given a connection on each call (SQLite's writer or a reader; a PostgreSQL
connection) and runs only portable SQL: ``?`` placeholders (rewritten to the engine's
``paramstyle``), JSON as TEXT, ``INSERT ... ON CONFLICT ... DO UPDATE``. The caller owns the
transaction (``save`` and ``delete`` write several statements: run them in one).

Tables (migration 2): ``reports`` (one row per report: title, description, author, times, and its
blocks as JSON text) and ``report_snapshots`` (the frozen run sets' data, one row per run set, kept
out of ``reports`` so that a list or a read of the report never loads them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from fulmen.server.store import NotFound


class Connection(Protocol):
    """What ``ReportSql`` needs of a DB-API connection (sqlite3's, psycopg's)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


_LIST = "report_id, title, description, author, created, updated"


class ReportSql:
    """The reports' statements; ``paramstyle`` is ``"qmark"`` (SQLite) or ``"format"``
    (psycopg)."""

    def __init__(self, paramstyle: str = "qmark") -> None:
        if paramstyle not in ("qmark", "format"):
            raise ValueError(f"paramstyle {paramstyle!r}: use 'qmark' or 'format'")
        self._format = paramstyle == "format"

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._format else sql

    @staticmethod
    def _row(row: Any) -> dict[str, Any]:
        report_id, title, description, author, created, updated = row[:6]
        return {
            "id": str(report_id),
            "title": str(title),
            "description": str(description),
            "author": None if author is None else str(author),
            "created": float(created),
            "updated": float(updated),
        }

    def list(self, con: Connection, entity: str, project: str) -> list[dict[str, Any]]:
        """The project's reports (without their blocks), the last updated first."""
        rows = con.execute(
            self._q(
                f"SELECT {_LIST} FROM reports WHERE entity=? AND project=? "
                "ORDER BY updated DESC, report_id"
            ),
            (entity, project),
        ).fetchall()
        return [self._row(r) for r in rows]

    def get(self, con: Connection, entity: str, project: str, report_id: str) -> dict[str, Any]:
        row = con.execute(
            self._q(
                f"SELECT {_LIST}, blocks FROM reports WHERE entity=? AND project=? AND report_id=?"
            ),
            (entity, project, report_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"report {entity}/{project}/{report_id} not found")
        out = self._row(row)
        out["blocks"] = json.loads(row[6])
        return out

    def exists(self, con: Connection, entity: str, project: str, report_id: str) -> bool:
        row = con.execute(
            self._q("SELECT 1 FROM reports WHERE entity=? AND project=? AND report_id=?"),
            (entity, project, report_id),
        ).fetchone()
        return row is not None

    def save(
        self,
        con: Connection,
        entity: str,
        project: str,
        report: Mapping[str, Any],
        snapshots: Mapping[str, Any | None],
        now: float,
    ) -> None:
        """Create or replace ``report`` (its ``id``, ``title``, ``description``, ``author``,
        ``created``, ``updated`` and ``blocks``) and its snapshots: ``snapshots`` names every
        frozen run set to keep, with its data to write, or None to keep the stored data as it is;
        the snapshots of any other run set are deleted."""
        report_id = report["id"]
        con.execute(
            self._q(
                "INSERT INTO reports (entity, project, report_id, title, description, blocks, "
                "author, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (entity, project, report_id) DO UPDATE SET title=excluded.title, "
                "description=excluded.description, blocks=excluded.blocks, "
                "updated=excluded.updated"
            ),
            (
                entity,
                project,
                report_id,
                report["title"],
                report["description"],
                _dumps(report["blocks"]),
                report.get("author"),
                report["created"],
                report["updated"],
            ),
        )
        stored = {
            str(r[0])
            for r in con.execute(
                self._q(
                    "SELECT runset_id FROM report_snapshots "
                    "WHERE entity=? AND project=? AND report_id=?"
                ),
                (entity, project, report_id),
            ).fetchall()
        }
        for runset_id in stored - set(snapshots):
            con.execute(
                self._q(
                    "DELETE FROM report_snapshots "
                    "WHERE entity=? AND project=? AND report_id=? AND runset_id=?"
                ),
                (entity, project, report_id, runset_id),
            )
        for runset_id, data in snapshots.items():
            if data is None:
                continue
            con.execute(
                self._q(
                    "INSERT INTO report_snapshots (entity, project, report_id, runset_id, data, "
                    "created) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (entity, project, report_id, runset_id) DO UPDATE SET "
                    "data=excluded.data, created=excluded.created"
                ),
                (entity, project, report_id, runset_id, _dumps(data), now),
            )

    def snapshots(
        self, con: Connection, entity: str, project: str, report_id: str
    ) -> dict[str, Any]:
        """Every frozen run set's data: run set id -> data."""
        rows = con.execute(
            self._q(
                "SELECT runset_id, data FROM report_snapshots "
                "WHERE entity=? AND project=? AND report_id=?"
            ),
            (entity, project, report_id),
        ).fetchall()
        return {str(r[0]): json.loads(r[1]) for r in rows}

    def delete(self, con: Connection, entity: str, project: str, report_id: str) -> bool:
        """Delete the report and its snapshots; whether it existed."""
        found = con.execute(
            self._q("DELETE FROM reports WHERE entity=? AND project=? AND report_id=?"),
            (entity, project, report_id),
        ).rowcount
        con.execute(
            self._q("DELETE FROM report_snapshots WHERE entity=? AND project=? AND report_id=?"),
            (entity, project, report_id),
        )
        return bool(found)
