"""``Api``: reading runs back from local run folders (the server issue adds the same over HTTP)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fulmen.track._artifacts import Artifact, ArtifactStore
from fulmen.track._layout import log_path
from fulmen.track._replay import RunData, replay, state_of
from fulmen.track._settings import resolve

if TYPE_CHECKING:
    from fulmen.track._media_files import RunFile


def _root_of(directory: str | os.PathLike[str] | None) -> Path:
    base = resolve({}).dir if directory is None else Path(directory)
    return base if base.name == "fulmen" or not (base / "fulmen").is_dir() else base / "fulmen"


class Api:
    """Read runs: ``Api().runs(project)``, ``Api().run(id)``; ``dir`` is what ``init`` got as
    ``dir`` (default: the same settings as ``init``), or its ``fulmen`` folder."""

    def __new__(
        cls, *args: Any, base_url: str | None = None, api_key: str | None = None, **kwargs: Any
    ) -> Any:
        if base_url is not None:  # the same reads over a fulmen server (fulmen.track._http)
            from fulmen.track._http import HttpApi

            return HttpApi(base_url, api_key, (kwargs.get("overrides") or {}).get("project"))
        return super().__new__(cls)

    def __init__(
        self,
        overrides: Mapping[str, Any] | None = None,
        dir: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise TypeError(
                f"Api(overrides=...) takes a dict such as {{'project': ...}}, got "
                f"{type(overrides).__name__} {overrides!r}; pass a folder as Api(dir=...)"
            )
        self.root = _root_of(dir or (overrides or {}).get("dir"))

    def _run_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob("run-*-*") if p.is_dir() and log_path(p).is_file()]
        return sorted(found, key=lambda p: p.name)

    def runs(
        self, project: str | None = None, filters: Mapping[str, Any] | None = None
    ) -> list[ApiRun]:
        """Every run (of ``project``, which may be ``"entity/project"``) matching ``filters``.

        ``filters`` maps a field to the value it must equal: ``state``, ``name``, ``group``,
        ``job_type``, ``project``, ``entity``, ``tags`` (the tag must be present), or
        ``config.<key>`` / ``summary.<key>``. Oldest first.
        """
        wanted = dict(filters or {})
        if project is not None:
            entity, _, name = project.rpartition("/")
            wanted["project"] = name
            if entity:
                wanted["entity"] = entity
        out = []
        for run_dir in self._run_dirs():
            run = ApiRun(run_dir)
            if all(run._matches(k, v) for k, v in wanted.items()):
                out.append(run)
        return out

    def run(self, path: str) -> ApiRun:
        """One run, by ``id``, ``project/id``, ``entity/project/id`` or its folder's path."""
        candidate = Path(path)
        if candidate.is_dir() and log_path(candidate).is_file():
            return ApiRun(candidate)
        run_id = path.rsplit("/", 1)[-1]
        matches = [d for d in self._run_dirs() if d.name.split("-", 2)[2] == run_id]
        if not matches:
            raise ValueError(f"no run {path!r} under {self.root}")
        run = ApiRun(matches[-1])
        parts = path.split("/")
        if len(parts) >= 2 and parts[-2] != run.project:
            raise ValueError(
                f"run {run_id!r} belongs to project {run.project!r}, not {parts[-2]!r}"
            )
        return run

    def sweep(self, path: str) -> Any:
        """The sweep ``id``, ``project/id`` or ``entity/project/id`` (see docs/sweeps.md): on the
        server when runs log to one, else in this fulmen folder."""
        from fulmen.sweep._api import open_sweep

        return open_sweep(path, self.root)

    def artifact(self, name: str) -> Artifact:
        """The artifact ``"name:alias"`` or ``"name:v3"`` from the local store."""
        return ArtifactStore(self.root / "artifacts").load(name)


class ApiRun:
    """One run as its run log records it. Read lazily, once; ``refresh()`` reads again."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.id = run_dir.name.split("-", 2)[2]
        self._data: RunData | None = None

    @property
    def data(self) -> RunData:
        if self._data is None:
            self._data = replay(log_path(self.dir))
            from fulmen.track._media_files import complete_refs

            complete_refs(self.dir / "files", self._data)  # media refs: the stored PNG's size
        return self._data

    def file(self, path: str) -> RunFile:
        """One of the run's files (``media/images/<sha>.png``, ``output.log``, ...)."""
        from fulmen.track._media_files import RunFile

        return RunFile(self.dir / "files", path)

    def refresh(self) -> None:
        self._data = None

    def _meta(self, key: str) -> Any:
        starts = self.data.starts
        return starts[-1].get(key) if starts else None

    @property
    def name(self) -> str:
        return str(self._meta("name") or self.id)

    @property
    def project(self) -> str:
        return str(self._meta("project") or "uncategorized")

    @property
    def entity(self) -> str | None:
        return self._meta("entity")  # type: ignore[no-any-return]

    @property
    def group(self) -> str | None:
        return self._meta("group")  # type: ignore[no-any-return]

    @property
    def job_type(self) -> str | None:
        return self._meta("job_type")  # type: ignore[no-any-return]

    @property
    def tags(self) -> list[str]:
        return list(self._meta("tags") or [])

    @property
    def notes(self) -> str | None:
        return self._meta("notes")  # type: ignore[no-any-return]

    @property
    def path(self) -> str:
        return "/".join(p for p in (self.entity, self.project, self.id) if p)

    @property
    def created_at(self) -> float | None:
        return self.data.starts[0].get("time") if self.data.starts else None

    @property
    def state(self) -> str:
        """running, finished, failed, killed or crashed."""
        return state_of(self.dir, self.data)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.data.config)

    @property
    def summary(self) -> dict[str, Any]:
        return self.data.summary.result()

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The ``define_metric`` declarations."""
        return list(self.data.metrics)

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        return list(self.data.artifacts)

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.data.files)

    @property
    def corrupt(self) -> list[Any]:
        """The stretches of the run log that did not decode (``runlog.Corrupt``)."""
        return list(self.data.corrupt)

    @property
    def rows(self) -> int:
        return len(self.data.rows)

    def scan_history(self, keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every history row in step order as written (rewinds applied), unsampled."""
        for row in self.data.rows:
            picked = _pick(row, keys)
            if picked is not None:
                yield picked

    def history(
        self, keys: list[str] | None = None, samples: int | None = None, pandas: bool = True
    ) -> Any:
        """The rows (with ``keys``: rows having all of them, those columns and ``_step``);
        ``samples`` evenly spaced rows when given. A pandas DataFrame when ``pandas`` is true and
        pandas is installed (as in W&B), else a list of dicts."""
        rows = list(self.scan_history(keys))
        if samples is not None:
            if samples < 1:
                raise ValueError(f"samples must be >= 1, got {samples}")
            if len(rows) > samples:
                last = len(rows) - 1
                picks = sorted({round(i * last / max(samples - 1, 1)) for i in range(samples)})
                rows = [rows[i] for i in picks]
        if not pandas:
            return rows
        try:
            import pandas as pd  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            return rows
        return pd.DataFrame(rows)

    def _matches(self, key: str, value: Any) -> bool:
        if key == "tags":
            return bool(value in self.tags)
        if key == "state":
            return bool(self.state == value)
        if key.startswith("config."):
            return bool(self.config.get(key[7:], _MISSING) == value)
        if key.startswith("summary."):
            return bool(self.summary.get(key[8:], _MISSING) == value)
        if key in ("id", "name", "project", "entity", "group", "job_type"):
            return bool(getattr(self, key) == value)
        raise ValueError(f"unknown filter {key!r}; use state, name, project, group, tags, config.x")

    def __repr__(self) -> str:
        return f"<ApiRun {self.path} ({self.state})>"


_MISSING = object()


def _pick(row: dict[str, Any], keys: list[str] | None) -> dict[str, Any] | None:
    if keys is None:
        return dict(row)
    if not all(k in row for k in keys):
        return None
    picked = {"_step": row["_step"]}
    picked.update((k, row[k]) for k in keys)
    return picked
