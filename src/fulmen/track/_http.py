"""``Api(base_url=..., api_key=...)``: the read API over a fulmen server, in the same shapes as the
local ``Api`` (``runs``, ``run``; ``ApiRun``'s properties, ``scan_history``, ``history``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fulmen.track._artifacts import ArtifactEntry, check_entry_name, file_digest
from fulmen.track._media_files import download_to
from fulmen.track._upload import Client, ServerError

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
        """One run, by ``entity/project/id``, ``project/id`` or ``id`` (any project of the
        entity, as the local Api finds a run by id alone)."""
        parts = path.split("/")
        run_id = parts[-1]
        if len(parts) == 1:
            projects = self.client.json("GET", f"/entities/{quote(self.entity, safe='')}/projects")
            for p in projects["projects"]:
                try:
                    data = self.client.json("GET", _run_base(self.entity, p["name"], run_id))
                except ServerError as exc:
                    if exc.code != 404:
                        raise
                    continue
                return HttpRun(self.client, self.entity, p["name"], data)
            raise ValueError(f"no run {run_id!r} on the server for entity {self.entity!r}")
        entity, project = self._split("/".join(parts[:-1]))
        data = self.client.json("GET", _run_base(entity, project, run_id))
        return HttpRun(self.client, entity, project, data)

    def sweep(self, path: str) -> Any:
        """The sweep ``entity/project/id`` (or ``project/id``, ``id``) on the server."""
        from fulmen.sweep._api import http_sweep

        return http_sweep(path, self.client.base_url, self.client.api_key, self.project)

    def artifact(self, name: str) -> HttpArtifact:
        """``"name:alias"`` or ``"name:v3"`` (``"name"`` is ``"name:latest"``), optionally
        ``"entity/project/name:alias"``."""
        path, _, version = name.partition(":")
        parts = path.split("/")
        entity, project = self._split("/".join(parts[:-1]) if len(parts) > 1 else None)
        base = (
            f"/entities/{quote(entity, safe='')}/projects/{quote(project, safe='')}"
            f"/artifacts/{quote(parts[-1], safe='')}/{quote(version or 'latest', safe='')}"
        )
        return HttpArtifact(self.client, base, self.client.json("GET", base))


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

    def file(self, path: str) -> HttpRunFile:
        """One of the run's files on the server (a media reference's ``path``, ...)."""
        return HttpRunFile(self._client, self._base, path)

    def __repr__(self) -> str:
        return f"<HttpRun {self.path} ({self.state})>"


class HttpRunFile:
    """A run's file on the server: ``name``, ``read()``, ``download(root)`` to ``root/<name>``."""

    def __init__(self, client: Client, base: str, name: str) -> None:
        self._client, self._base, self.name = client, base, name

    def read(self) -> bytes:
        return self._client.request("GET", self._base + "/files/" + quote(self.name))

    def download(
        self, root: str | os.PathLike[str] = ".", replace: bool = False, exist_ok: bool = False
    ) -> Path:
        return download_to(root, self.name, replace, exist_ok, lambda t: t.write_bytes(self.read()))


class HttpArtifact:
    """An artifact version on the server, shaped like a logged ``Artifact``: ``name``, ``type``,
    ``version``, ``aliases``, ``digest``, ``metadata``, ``manifest``, ``entries``,
    ``get_path(name)``, ``download(root)``."""

    def __init__(self, client: Client, base: str, data: dict[str, Any]) -> None:
        self._client, self._base = client, base
        self.name: str = data["name"]
        self.type: str | None = data.get("type")
        self.version: str = data["version"]
        self.aliases: list[str] = list(data.get("aliases") or [])
        self.digest: str | None = data.get("digest")
        self.metadata: dict[str, Any] = dict(data.get("metadata") or {})
        entries = data.get("entries")
        self.manifest: dict[str, Any] = {"entries": entries if isinstance(entries, dict) else {}}

    @property
    def entries(self) -> dict[str, ArtifactEntry]:
        return {
            n: ArtifactEntry(self, n, e["digest"], int(e.get("size") or 0))
            for n, e in self.manifest["entries"].items()
        }

    def get_path(self, name: str) -> ArtifactEntry:
        entry = self.entries.get(name)
        if entry is None:
            raise KeyError(f"artifact {self.name}:{self.version} has no file {name!r}")
        return entry

    def download(self, root: str | None = None) -> str:
        """Fetch every file into ``root`` (default ``./artifacts/<name>/<version>``)."""
        for name in self.manifest["entries"]:
            self._copy_entry(name, root)
        target = self._root(root)
        target.mkdir(parents=True, exist_ok=True)
        return str(target)

    def _root(self, root: str | None) -> Path:
        return Path(root) if root is not None else Path("artifacts") / self.name / self.version

    def _copy_entry(self, name: str, root: str | None) -> str:
        target = self._root(root).resolve()
        dest = (target / check_entry_name(name)).resolve()
        if not dest.is_relative_to(target):  # a server cannot write outside the folder
            raise ValueError(f"artifact file {name!r} would land outside {target}")
        entry = self.manifest["entries"][name]
        if dest.is_file() and file_digest(dest) == entry["digest"]:
            return str(dest)
        data = self._client.request("GET", f"{self._base}/files/{quote(name)}")
        if hashlib.sha256(data).hexdigest() != entry["digest"]:
            raise ValueError(f"artifact file {name!r} does not match its digest")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        return str(dest)
