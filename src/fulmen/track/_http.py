"""``Api(base_url=..., api_key=...)``: the read API over a fulmen server, in the same shapes as the
local ``Api`` (``runs``, ``run``; ``ApiRun``'s properties, ``scan_history``, ``history``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from fulmen.track._upload import Client

_COLUMNS = ("id", "name", "project", "entity", "group", "job_type", "state")


class HttpApi:
    """Runs on a server; ``path`` is ``entity/project/id`` (or ``project/id``, ``id`` with a
    default project), like the local ``Api``."""

    def __init__(self, base_url: str, api_key: str | None = None, project: str | None = None):
        self.client = Client(base_url, api_key)
        self.project = project or "uncategorized"
        self._entity: str | None = None

    @property
    def entity(self) -> str:
        if self._entity is None:
            self._entity = str(self.client.json("GET", "/viewer")["entity"])
        return self._entity

    def _split(self, path: str | None) -> tuple[str, str]:
        parts = (path or self.project).split("/")
        if len(parts) >= 2:
            return parts[-2], parts[-1]
        return self.entity, parts[0]

    def runs(
        self, project: str | None = None, filters: Mapping[str, Any] | None = None
    ) -> list[HttpRun]:
        """Every run of ``project`` matching ``filters`` (the local Api's names), oldest first."""
        entity, name = self._split(project)
        query: dict[str, Any] = {"sort": "created", "limit": 10_000, "filter": [], "tag": []}
        for key, value in (filters or {}).items():
            if key == "state":
                query["state"] = value
            elif key == "tags":
                query["tag"].append(value)
            elif key == "group":
                query["group"] = value
            elif key.startswith(("config.", "summary.")):
                query["filter"].append(f"{key}={json.dumps(value)}")
            elif key not in ("project", "entity"):
                raise ValueError(f"unknown filter {key!r}; use state, group, tags, config.x")
        base = f"/entities/{quote(entity, safe='')}/projects/{quote(name, safe='')}"
        page = self.client.json("GET", base + "/runs", query=query)
        return [HttpRun(self.client, entity, name, r) for r in page["runs"]]

    def run(self, path: str) -> HttpRun:
        parts = path.split("/")
        run_id = parts[-1]
        entity, project = self._split("/".join(parts[:-1]) if len(parts) > 1 else None)
        data = self.client.json("GET", _run_base(entity, project, run_id))
        return HttpRun(self.client, entity, project, data)


def _run_base(entity: str, project: str, run_id: str) -> str:
    return f"/entities/{quote(entity, safe='')}/projects/{quote(project, safe='')}/runs/{run_id}"


class HttpRun:
    """One run on the server (the local ``ApiRun``'s shape)."""

    def __init__(self, client: Client, entity: str, project: str, data: dict[str, Any]) -> None:
        self._client, self._data = client, data
        self.entity, self.project, self.id = entity, project, str(data["id"])

    def refresh(self) -> None:
        self._data = self._client.json("GET", self._base)

    @property
    def _base(self) -> str:
        return _run_base(self.entity, self.project, self.id)

    def __getattr__(self, name: str) -> Any:
        if name in ("name", "group", "job_type", "notes", "state", "config", "summary", "rows"):
            return self._data.get(name)
        raise AttributeError(name)

    @property
    def tags(self) -> list[str]:
        return list(self._data.get("tags") or [])

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def created_at(self) -> float | None:
        value = self._data.get("created")
        return None if value is None else float(value)

    @property
    def metrics(self) -> list[dict[str, Any]]:
        if "metrics" not in self._data:
            self.refresh()
        return list(self._data.get("metrics") or [])

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self._client.json("GET", self._base + "/files")["files"])

    def scan_history(self, keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every history row, unsampled (the server's JSON-lines export)."""
        body = self._client.request(
            "GET", self._base + "/history/export", query={"format": "jsonl"}
        )
        for line in body.splitlines():
            row = json.loads(line)
            if keys is None:
                yield row
            elif all(k in row for k in keys):
                yield {"_step": row["_step"], **{k: row[k] for k in keys}}

    def history(self, keys: list[str] | None = None, samples: int | None = None) -> Any:
        rows = list(self.scan_history(keys))
        if samples is not None and len(rows) > samples >= 1:
            last = len(rows) - 1
            picks = sorted({round(i * last / max(samples - 1, 1)) for i in range(samples)})
            rows = [rows[i] for i in picks]
        return rows

    def __repr__(self) -> str:
        return f"<HttpRun {self.path} ({self.state})>"
