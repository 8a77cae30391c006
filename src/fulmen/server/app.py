"""The ASGI application: one FastAPI app whose routes all live under ``API_PREFIX``.

Every route is registered here, through routers, and wrapped by the one auth layer
(``_auth.AuthMiddleware``), which runs before routing. Handlers validate names (``_names``), call
the store (``store.Store``, no SQL here) and answer JSON; every page of the dashboard reads the same
JSON (each page has its JSON twin). docs/http-api.md lists every endpoint.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from fulmen.__about__ import __version__
from fulmen.server import _names
from fulmen.server._auth import EVERYTHING, AuthMiddleware, BodyLimit
from fulmen.server._blobs import BlobTooLarge, DigestMismatch, FileBlobs
from fulmen.server._ingest import BadBatch
from fulmen.server._pages import pages_router
from fulmen.server.store import (
    Conflict,
    Filter,
    HistoryQuery,
    NotFound,
    RunQuery,
    Store,
    open_store,
)

API_PREFIX = "/api/v1"
MAX_BATCH = 32 << 20  # bytes of frames in one ingest batch, after decompression
MAX_BLOB = 16 << 30  # bytes in one uploaded file
MAX_JSON = 16 << 20  # bytes in any other request body
DEFAULT_ENTITY = "local"  # the entity of an open server's requests that name none


@dataclass
class ServerConfig:
    """How ``fulmen server`` was started (``--data``, ``--db``, the auth switches)."""

    data: Path = field(default_factory=lambda: Path("~/.local/share/fulmen/server").expanduser())
    db: str | None = None
    require_auth: bool = False
    allow_anonymous: bool = False
    max_batch: int = MAX_BATCH
    max_blob: int = MAX_BLOB


class Health(BaseModel):
    """What ``GET /api/v1/health`` answers: the server is up, and which fulmen it runs."""

    status: str
    version: str


class Held(BaseModel):
    """The highest contiguous sequence number of a run's records that the server holds."""

    held: int


class CrashedBody(BaseModel):
    last_seq: int = Field(ge=0, description="the last sequence the client wrote; must equal held")


class ManifestBody(BaseModel):
    """An artifact version's manifest: ``entries`` maps each file's path to its digest and size."""

    digest: str
    entries: dict[str, dict[str, Any]] = Field(max_length=1_000_000)
    metadata: dict[str, Any] | None = None
    description: str | None = None


class DigestsBody(BaseModel):
    digests: list[str] = Field(max_length=100_000)


class _Resources:
    """The store and blob folder, opened on first use (building the app touches no disk)."""

    def __init__(self, config: ServerConfig, store: Store | None) -> None:
        self.config = config
        self._store = store
        self._blobs: FileBlobs | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.config.data, self.config.db)
        return self._store

    @property
    def blobs(self) -> FileBlobs:
        if self._blobs is None:
            self._blobs = FileBlobs(self.config.data / "blobs")
        return self._blobs


@dataclass(frozen=True)
class RunRef:
    entity: str
    project: str
    run_id: str


def _project(entity: str, project: str) -> tuple[str, str]:
    return _names.name("entity", entity), _names.name("project", project)


def _run_ref(entity: str, project: str, run_id: str) -> RunRef:
    entity, project = _project(entity, project)
    return RunRef(entity, project, _names.run_id(run_id))


ProjectDep = Annotated[tuple[str, str], Depends(_project)]
RunDep = Annotated[RunRef, Depends(_run_ref)]
_UPLOAD_PATH = re.compile(r"/runs/[^/]+/files/|/blobs/[0-9a-f]{64}$")
_FILTER = re.compile(r"^((?:config|summary)\.[^<>=!]+?)(!=|>=|<=|=|<|>)(.*)$")


def _field(text: str) -> str:
    column, _, path = text.partition(".")
    if column not in ("config", "summary") or not path or len(text) > 300:
        raise HTTPException(422, f"field {text!r}: write config.<key> or summary.<key>")
    return text


def _parse_filter(text: str) -> Filter:
    match = _FILTER.match(text)
    if match is None:
        raise HTTPException(
            422,
            f"filter {text!r}: write config.<key><op><value> or summary.<key><op><value>, "
            "op one of = != < <= > >=",
        )
    path, op, raw = match.groups()
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, (dict, list)):
        raise HTTPException(422, f"filter {text!r}: compare with a number, string, bool or null")
    return Filter(path, op, value)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, decompressed (``Content-Encoding: gzip`` or ``deflate``), at most ``limit`` bytes."""  # noqa: E501
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise HTTPException(415, f"Content-Encoding {encoding!r}: send gzip, deflate or none")
    decoder = None
    if encoding != "identity":
        decoder = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            if decoder is not None:
                chunk = decoder.decompress(chunk, limit - size + 1)  # noqa: PLW2901
                if decoder.unconsumed_tail:
                    raise HTTPException(413, f"the batch is larger than {limit} bytes")
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the batch is larger than {limit} bytes")
            parts.append(chunk)
        if decoder is not None and not decoder.eof:
            raise HTTPException(400, f"the {encoding} body is truncated")
    except zlib.error as exc:
        raise HTTPException(400, f"the {encoding} body does not decompress: {exc}") from exc
    return b"".join(parts)


def _principal(request: Request) -> str:
    return str(request.state.principal)


def _meta_router(res: _Resources) -> APIRouter:
    router = APIRouter(tags=["meta"])

    @router.get("/health", response_model=Health, summary="Liveness and version")
    def health() -> Health:
        return Health(status="ok", version=__version__)

    @router.get("/viewer", summary="Who the request's key belongs to")
    def viewer(request: Request) -> dict[str, Any]:
        principal = _principal(request)
        entity = DEFAULT_ENTITY if principal == EVERYTHING else principal
        return {"entity": entity, "authenticated": principal != EVERYTHING}

    @router.post("/anonymous", summary="Create an anonymous space (with --allow-anonymous)")
    def anonymous() -> dict[str, Any]:
        if not res.config.allow_anonymous:
            raise HTTPException(403, "this server does not accept anonymous runs")
        return {"entity": res.store.create_anonymous()}

    return router


def _runs_router(res: _Resources) -> APIRouter:  # noqa: PLR0915
    router = APIRouter(tags=["runs"])
    runs_path = "/entities/{entity}/projects/{project}/runs"
    run_path = runs_path + "/{run_id}"

    @router.get("/entities", summary="Entities and their number of projects and runs")
    def entities(request: Request) -> dict[str, Any]:
        principal = _principal(request)
        only = None if principal == EVERYTHING else principal
        return {"entities": res.store.entities(only)}

    @router.get("/entities/{entity}/projects", summary="Projects of an entity")
    def projects(entity: str) -> dict[str, Any]:
        return {"projects": res.store.projects(_names.name("entity", entity))}

    @router.get(runs_path, summary="Runs of a project: filter, sort, page")
    def runs(
        names: ProjectDep,
        state: Annotated[list[str] | None, Query(max_length=10)] = None,
        tag: Annotated[list[str] | None, Query(max_length=20)] = None,
        group: Annotated[str | None, Query(max_length=128)] = None,
        search: Annotated[str | None, Query(max_length=128)] = None,
        field: Annotated[list[str] | None, Query(max_length=200)] = None,
        filter: Annotated[list[str] | None, Query(max_length=20)] = None,
        sort: Annotated[str, Query(max_length=200)] = "-created",
        limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        query = RunQuery(
            states=tuple(state or ()),
            tags=tuple(tag or ()),
            group=group,
            search=search,
            fields=None if field is None else tuple(_field(f) for f in field),
            filters=tuple(_parse_filter(f) for f in filter or ()),
            sort=sort,
            limit=limit,
            offset=offset,
        )
        try:
            page = res.store.runs(*names, query)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"total": page.total, "limit": limit, "offset": offset, "runs": page.runs}

    @router.get(
        "/entities/{entity}/projects/{project}/columns",
        summary="Config, summary and history keys of a project's runs (table columns)",
    )
    def columns(names: ProjectDep) -> dict[str, Any]:
        return res.store.columns(*names)

    @router.get(run_path, summary="One run: config, summary, metadata, state")
    def run(ref: RunDep) -> dict[str, Any]:
        return res.store.run(ref.entity, ref.project, ref.run_id)

    @router.get(run_path + "/records", response_model=Held, summary="Highest sequence held")
    def held(ref: RunDep) -> Held:
        return Held(held=res.store.held(ref.entity, ref.project, ref.run_id))

    @router.post(
        run_path + "/records",
        response_model=Held,
        summary="Ingest a batch of run-log frames (idempotent by sequence)",
        openapi_extra={
            "requestBody": {
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                "required": True,
            }
        },
    )
    async def ingest(ref: RunDep, request: Request) -> Held:
        body = await _read_body(request, res.config.max_batch)
        try:
            held = await run_in_threadpool(
                res.store.ingest, ref.entity, ref.project, ref.run_id, body
            )
        except BadBatch as exc:
            raise HTTPException(400, str(exc)) from exc
        return Held(held=held)

    @router.post(run_path + "/heartbeat", summary="The run's client is alive, with nothing new")
    def heartbeat(ref: RunDep) -> dict[str, Any]:
        res.store.heartbeat(ref.entity, ref.project, ref.run_id)
        return {"ok": True}

    @router.post(run_path + "/crashed", summary="Mark a dead run crashed once all is held")
    def crashed(ref: RunDep, body: CrashedBody) -> dict[str, Any]:
        state = res.store.mark_crashed(ref.entity, ref.project, ref.run_id, body.last_seq)
        return {"state": state}

    @router.get(run_path + "/console", summary="Console output, in order")
    def console(
        ref: RunDep,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> dict[str, Any]:
        lines = res.store.console(ref.entity, ref.project, ref.run_id, after, limit)
        return {"lines": lines}

    @router.get(run_path + "/system", summary="System metrics (STATS records)")
    def system(ref: RunDep) -> dict[str, Any]:
        return {"stats": res.store.system(ref.entity, ref.project, ref.run_id)}

    @router.get(run_path + "/artifacts", summary="Artifact versions a run logged")
    def run_artifacts(ref: RunDep) -> dict[str, Any]:
        return {"artifacts": res.store.run_artifacts(ref.entity, ref.project, ref.run_id)}

    @router.get(run_path + "/files", summary="A run's files")
    def files(ref: RunDep) -> dict[str, Any]:
        return {"files": res.store.files(ref.entity, ref.project, ref.run_id)}

    @router.get(run_path + "/files/{path:path}", summary="Download one of a run's files")
    def download(ref: RunDep, path: str) -> StreamingResponse:
        path = _names.relative_path(path)
        digest = res.store.file_digest(ref.entity, ref.project, ref.run_id, path)
        return _blob_response(res, digest, path)

    @router.put(
        run_path + "/files/{path:path}",
        summary="Upload one of a run's files",
        openapi_extra={
            "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}
        },
    )
    async def upload(
        ref: RunDep,
        path: str,
        request: Request,
        digest: Annotated[str, Query(description="SHA-256 of the body, hex")],
    ) -> dict[str, Any]:
        path = _names.relative_path(path)
        digest = _names.digest(digest)
        await run_in_threadpool(res.store.run, ref.entity, ref.project, ref.run_id)  # 404 first
        size = await _put_blob(res, digest, request)
        await run_in_threadpool(
            res.store.put_file, ref.entity, ref.project, ref.run_id, path, digest, size
        )
        return {"path": path, "digest": digest, "size": size}

    @router.get(run_path + "/history/export", summary="A run's whole history, unsampled")
    def export(
        ref: RunDep,
        format: Annotated[str, Query(pattern="^(csv|parquet|jsonl)$")] = "csv",
        key: Annotated[list[str] | None, Query(max_length=100)] = None,
    ) -> StreamingResponse:
        from fulmen.server import _export

        res.store.run(ref.entity, ref.project, ref.run_id)  # 404 before streaming starts

        def frames() -> Iterator[bytes]:
            return res.store.frames(ref.entity, ref.project, ref.run_id)

        names, rows = _export.rows(frames)
        if key:  # only rows that have every one of these keys, and only these columns
            wanted = [_names.key(k) for k in key]
            names = [*_export.BUILTIN, *(k for k in wanted if k not in _export.BUILTIN)]
            rows = (r for r in rows if all(k in r for k in wanted))
        filename = f"{ref.run_id}-history.{format}"
        headers = {"content-disposition": f'attachment; filename="{filename}"'}
        if format == "csv":
            return StreamingResponse(_export.csv_stream(names, rows), 200, headers, "text/csv")
        if format == "jsonl":
            return StreamingResponse(
                _export.jsonl_stream(names, rows), 200, headers, "application/x-ndjson"
            )
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise HTTPException(
                501, "Parquet export needs pyarrow on the server: pip install 'fulmen[parquet]'"
            ) from exc
        codes = _export.column_codes(frames)
        return StreamingResponse(
            _export.parquet_stream(names, codes, rows), 200, headers, "application/octet-stream"
        )

    @router.get(
        run_path + "/history/values",
        summary="One key's strings, media or histograms by step (no sampling)",
    )
    def values(
        ref: RunDep,
        key: Annotated[str, Query(max_length=256)],
        min: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        max: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> Response:
        found = res.store.values(
            ref.entity,
            ref.project,
            ref.run_id,
            _names.key(key),
            -float("inf") if min is None else min,
            float("inf") if max is None else max,
            limit,
        )
        # orjson: NaN inside a logged value becomes null instead of failing the answer
        return Response(orjson.dumps({"key": key, "values": found}), media_type="application/json")

    @router.get(
        "/entities/{entity}/projects/{project}/history",
        summary="Chart data: many runs x many keys, bucketed (min, max, last)",
    )
    def history(
        names: ProjectDep,
        run: Annotated[list[str], Query(min_length=1, max_length=1000)],
        key: Annotated[list[str], Query(min_length=1, max_length=100)],
        buckets: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        x: Annotated[str, Query(max_length=256)] = "_step",
        min: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        max: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    ) -> Response:
        if min is not None and max is not None and min > max:
            raise HTTPException(422, f"min ({min}) is larger than max ({max})")
        query = HistoryQuery(
            runs=tuple(_names.run_id(r) for r in run),
            keys=tuple(_names.key(k) for k in key),
            buckets=buckets,
            x=_names.key(x),
            lo=min,
            hi=max,
        )
        series = res.store.history(*names, query)
        # orjson writes the bucket arrays straight from numpy (NaN as null): 10x json's speed
        payload = {"x": x, "buckets": buckets, "series": series}
        return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), 200,
                        media_type="application/json")  # fmt: skip

    return router


def _artifacts_router(res: _Resources) -> APIRouter:
    router = APIRouter(tags=["artifacts"])
    base = "/entities/{entity}/projects/{project}/artifacts"

    @router.get(base, summary="Artifact collections of a project")
    def collections(names: ProjectDep) -> dict[str, Any]:
        return {"artifacts": res.store.artifact_collections(*names)}

    @router.put(base + "/{name}/manifest", summary="Attach a logged version's file manifest")
    def manifest(names: ProjectDep, name: str, body: ManifestBody) -> dict[str, Any]:
        name = _names.artifact_name(name)
        digest = _names.digest(body.digest)
        entries: dict[str, Any] = {}
        for path, entry in body.entries.items():
            entry_digest = entry.get("digest")
            if not isinstance(entry_digest, str):
                raise HTTPException(422, f"entry {path!r} has no digest")
            entries[_names.relative_path(path)] = {
                "digest": _names.digest(entry_digest),
                "size": entry.get("size"),
            }
        expected = hashlib.sha256(json.dumps(sorted(body.entries.items())).encode()).hexdigest()
        if expected != digest:
            raise HTTPException(400, "the entries do not hash to the manifest's digest")
        lacking = res.store.missing_blobs(names[0], sorted({e["digest"] for e in entries.values()}))
        if lacking:
            raise HTTPException(409, f"upload these blobs first: {', '.join(lacking[:10])}")
        version = res.store.set_manifest(*names, name, digest, entries, body.metadata or {})
        return {"name": name, "version": version}

    @router.get(base + "/{name}", summary="Versions of an artifact, with their aliases")
    def versions(names: ProjectDep, name: str) -> dict[str, Any]:
        name = _names.artifact_name(name)
        return {"versions": res.store.artifact_versions(*names, name)}

    @router.get(base + "/{name}/{version}", summary="One version (vN or an alias) and its files")
    def version(names: ProjectDep, name: str, version: str) -> dict[str, Any]:
        name = _names.artifact_name(name)
        return res.store.artifact(*names, name, _names.alias(version))

    @router.get(base + "/{name}/{version}/files/{path:path}", summary="Download an artifact file")
    def artifact_file(names: ProjectDep, name: str, version: str, path: str) -> StreamingResponse:
        path = _names.relative_path(path)
        art = res.store.artifact(*names, _names.artifact_name(name), _names.alias(version))
        digest = _entry_digest(art["entries"], path)
        return _blob_response(res, digest, path)

    @router.post("/entities/{entity}/blobs/missing", summary="Which of these digests to upload")
    def missing(entity: str, body: DigestsBody) -> dict[str, Any]:
        entity = _names.name("entity", entity)
        digests = [_names.digest(d) for d in body.digests]
        # per entity: another entity's copy of the same bytes does not count (the client must
        # prove it has them by uploading; on disk the blob is stored once either way)
        lacking = res.store.missing_blobs(entity, digests)
        return {"missing": lacking}

    @router.put(
        "/entities/{entity}/blobs/{digest}",
        summary="Upload a blob by its SHA-256",
        openapi_extra={
            "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}
        },
    )
    async def put_blob(entity: str, digest: str, request: Request) -> dict[str, Any]:
        entity, digest = _names.name("entity", entity), _names.digest(digest)
        size = await _put_blob(res, digest, request)
        await run_in_threadpool(res.store.add_blob, entity, digest, size)
        return {"digest": digest, "size": size}

    return router


def _entry_digest(entries: Any, path: str) -> str:
    entry: Any = None
    if isinstance(entries, dict):
        entry = entries.get(path)
    elif isinstance(entries, list):
        entry = next((e for e in entries if isinstance(e, dict) and e.get("path") == path), None)
    digest = entry.get("digest") if isinstance(entry, dict) else entry
    if not isinstance(digest, str):
        raise NotFound(f"the artifact has no file {path!r}")
    return digest.removeprefix("sha256:")


async def _put_blob(res: _Resources, digest: str, request: Request) -> int:
    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk

    try:
        return await res.blobs.put(digest, chunks(), res.config.max_blob)
    except BlobTooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except DigestMismatch as exc:
        raise HTTPException(400, str(exc)) from exc


def _blob_response(res: _Resources, digest: str, path: str) -> StreamingResponse:
    digest = _names.digest(digest)
    if not res.blobs.exists(digest):
        raise NotFound(f"the content of {path!r} has not been uploaded")
    filename = path.rsplit("/", 1)[-1].replace('"', "")
    headers = {
        # never rendered by the browser on our origin: a stored HTML file cannot run scripts here
        "content-disposition": f'attachment; filename="{filename}"',
        "x-content-type-options": "nosniff",
    }
    return StreamingResponse(res.blobs.open(digest), 200, headers, "application/octet-stream")


def create_app(config: ServerConfig | None = None, *, store: Store | None = None) -> FastAPI:
    """Build the server's ASGI app.

    The schema is served at ``/api/v1/openapi.json``, its docs page at ``/api/v1/docs``. The store
    opens on the first request that needs it (``config.data``), unless one is given.
    """
    config = config or ServerConfig()
    res = _Resources(config, store)
    app = FastAPI(
        title="fulmen",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.resources = res
    app.include_router(_meta_router(res), prefix=API_PREFIX)
    app.include_router(_runs_router(res), prefix=API_PREFIX)
    app.include_router(_artifacts_router(res), prefix=API_PREFIX)
    # the dashboard's pages, after the API so that no page path can shadow an API route
    app.include_router(pages_router(lambda: res.store))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 409)

    @app.exception_handler(PermissionError)
    async def forbidden(request: Request, exc: PermissionError) -> JSONResponse:
        return JSONResponse({"detail": "the path resolves outside its folder"}, 403)

    def limit_for(scope: Any) -> int:
        path, method = scope["path"], scope.get("method")
        if method == "POST" and path.endswith("/records"):
            return config.max_batch  # compressed; decompressed size is checked again
        if method == "PUT" and _UPLOAD_PATH.search(path):
            return config.max_blob
        return MAX_JSON

    app.add_middleware(BodyLimit, limit_for=limit_for)  # inner: runs after auth
    app.add_middleware(
        AuthMiddleware,
        prefix=API_PREFIX,
        store=lambda: res.store,
        require_auth=config.require_auth,
        allow_anonymous=config.allow_anonymous,
    )
    return app
