"""The SQL of saved workspaces (``_workspaces``), apart from the main store module so that every
store (SQLite today, PostgreSQL next to it) runs the same statements: portable SQL only (``ON
CONFLICT ... DO UPDATE``, the layout as JSON text), with the engine's parameter mark given.

Table ``workspaces`` (migration 2): one row per (entity, project, owner), the layout as JSON
text and when it was saved. ``owner`` is ``""`` (the project's own) or ``key:<hash>``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol


class Cursor(Protocol):
    def fetchone(self) -> Any: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


class WorkspaceSQL:
    """The workspace statements for a DB-API connection whose parameter mark is ``mark``
    (``?`` for sqlite3, ``%s`` for psycopg). The caller holds the transaction."""

    def __init__(self, mark: str = "?") -> None:
        m = mark
        self._get = (
            f"SELECT layout, updated FROM workspaces WHERE entity={m} AND project={m} AND owner={m}"
        )
        self._put = (
            "INSERT INTO workspaces (entity, project, owner, layout, updated) "
            f"VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (entity, project, owner) "
            "DO UPDATE SET layout = excluded.layout, updated = excluded.updated"
        )
        self._delete = f"DELETE FROM workspaces WHERE entity={m} AND project={m} AND owner={m}"

    def get(self, con: Connection, entity: str, project: str, owner: str) -> dict[str, Any] | None:
        """The saved layout and when it was saved, or None. A row that is not valid JSON (a hand
        edit) reads as none saved: the default layout is shown, not an error."""
        row = con.execute(self._get, (entity, project, owner)).fetchone()
        if row is None:
            return None
        try:
            layout = json.loads(row[0])
        except (TypeError, ValueError):
            return None
        if not isinstance(layout, dict):
            return None
        return {"layout": layout, "updated": float(row[1])}

    def put(
        self, con: Connection, entity: str, project: str, owner: str, layout: dict[str, Any]
    ) -> float:
        now = time.time()
        text = json.dumps(layout, separators=(",", ":"), allow_nan=False)
        con.execute(self._put, (entity, project, owner, text, now))
        return now

    def delete(self, con: Connection, entity: str, project: str, owner: str) -> None:
        con.execute(self._delete, (entity, project, owner))
