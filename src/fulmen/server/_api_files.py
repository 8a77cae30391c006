"""Routes of files and artifacts: a run's files (list, download, upload), artifact collections,
versions and their manifests and files, and blobs by digest."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from fulmen.server import _names
from fulmen.server._api_runs import RUN
from fulmen.server._deps import ProjectDep, ResDep, RunDep, blob_response, missing_blobs
from fulmen.server._deps import put_blob as store_blob
from fulmen.server.store import NotFound

files_router = APIRouter(tags=["runs"])
artifacts_router = APIRouter(tags=["artifacts"])
ARTIFACTS = "/entities/{entity}/projects/{project}/artifacts"
_OCTETS = {"requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}}


class ManifestBody(BaseModel):
    """An artifact version's manifest: ``entries`` maps each file's path to its digest and size."""

    digest: str
    entries: dict[str, dict[str, Any]] = Field(max_length=1_000_000)
    metadata: dict[str, Any] | None = None
    description: str | None = None


class DigestsBody(BaseModel):
    digests: list[str] = Field(max_length=100_000)


# --- a run's files and artifacts ------------------------------------------------------------


@files_router.get(RUN + "/artifacts", summary="Artifact versions a run logged")
def run_artifacts(res: ResDep, ref: RunDep) -> dict[str, Any]:
    return {"artifacts": res.store.run_artifacts(ref.entity, ref.project, ref.run_id)}


@files_router.get(RUN + "/files", summary="A run's files")
def files(res: ResDep, ref: RunDep) -> dict[str, Any]:
    return {"files": res.store.files(ref.entity, ref.project, ref.run_id)}


@files_router.get(RUN + "/files/{path:path}", summary="Download one of a run's files")
def download(res: ResDep, ref: RunDep, path: str) -> Response:
    path = _names.relative_path(path)
    digest = res.store.file_digest(ref.entity, ref.project, ref.run_id, path)
    return blob_response(res, digest, path)


@files_router.put(
    RUN + "/files/{path:path}", summary="Upload one of a run's files", openapi_extra=_OCTETS
)
async def upload(
    res: ResDep,
    ref: RunDep,
    path: str,
    request: Request,
    digest: Annotated[str, Query(description="SHA-256 of the body, hex")],
) -> dict[str, Any]:
    path = _names.relative_path(path)
    digest = _names.digest(digest)
    await run_in_threadpool(res.store.run, ref.entity, ref.project, ref.run_id)  # 404 first
    size = await store_blob(res, ref.entity, digest, request)
    await run_in_threadpool(
        res.store.put_file, ref.entity, ref.project, ref.run_id, path, digest, size
    )
    return {"path": path, "digest": digest, "size": size}


# --- artifacts and blobs --------------------------------------------------------------------


@artifacts_router.get(ARTIFACTS, summary="Artifact collections of a project")
def collections(res: ResDep, names: ProjectDep) -> dict[str, Any]:
    return {"artifacts": res.store.artifact_collections(*names)}


@artifacts_router.put(
    ARTIFACTS + "/{name}/manifest", summary="Attach a logged version's file manifest"
)
def manifest(res: ResDep, names: ProjectDep, name: str, body: ManifestBody) -> dict[str, Any]:
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
    lacking = missing_blobs(res, names[0], sorted({e["digest"] for e in entries.values()}))
    if lacking:
        raise HTTPException(409, f"upload these blobs first: {', '.join(lacking[:10])}")
    version = res.store.set_manifest(*names, name, digest, entries, body.metadata or {})
    return {"name": name, "version": version}


@artifacts_router.get(ARTIFACTS + "/{name}", summary="Versions of an artifact, with their aliases")
def versions(res: ResDep, names: ProjectDep, name: str) -> dict[str, Any]:
    name = _names.artifact_name(name)
    return {"versions": res.store.artifact_versions(*names, name)}


@artifacts_router.get(
    ARTIFACTS + "/{name}/{version}", summary="One version (vN or an alias) and its files"
)
def version(res: ResDep, names: ProjectDep, name: str, version: str) -> dict[str, Any]:
    name = _names.artifact_name(name)
    return res.store.artifact(*names, name, _names.alias(version))


@artifacts_router.get(
    ARTIFACTS + "/{name}/{version}/files/{path:path}", summary="Download an artifact file"
)
def artifact_file(res: ResDep, names: ProjectDep, name: str, version: str, path: str) -> Response:
    path = _names.relative_path(path)
    art = res.store.artifact(*names, _names.artifact_name(name), _names.alias(version))
    digest = _entry_digest(art["entries"], path)
    return blob_response(res, digest, path)


@artifacts_router.post(
    "/entities/{entity}/blobs/missing", summary="Which of these digests to upload"
)
def missing(res: ResDep, entity: str, body: DigestsBody) -> dict[str, Any]:
    entity = _names.name("entity", entity)
    digests = [_names.digest(d) for d in body.digests]
    # per entity: another entity's copy of the same bytes does not count (the client must
    # prove it has them by uploading; the blob store holds them once either way)
    lacking = missing_blobs(res, entity, digests)
    return {"missing": lacking}


@artifacts_router.put(
    "/entities/{entity}/blobs/{digest}",
    summary="Upload a blob by its SHA-256",
    openapi_extra=_OCTETS,
)
async def put_blob(res: ResDep, entity: str, digest: str, request: Request) -> dict[str, Any]:
    entity, digest = _names.name("entity", entity), _names.digest(digest)
    size = await store_blob(res, entity, digest, request)
    await run_in_threadpool(res.store.add_blob, entity, digest, size)
    return {"digest": digest, "size": size}


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
