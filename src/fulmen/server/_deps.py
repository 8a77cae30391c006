"""What every route module shares: the server's settings and resources, the path parameters that
name a project or a run (validated), and the helpers for request bodies and blobs (uploads,
downloads, which are missing): every route reaches the blob store (``_blobs.BlobStore``) through
them."""

from __future__ import annotations

import os
import re
import threading
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from fulmen.server import _names
from fulmen.server._blobs import BlobMissing, BlobStore, BlobTooLarge, DigestMismatch, open_blobs
from fulmen.server._security import SecurityConfig
from fulmen.server.store import NotFound, Store, open_store

if TYPE_CHECKING:
    from fulmen.server._api_sweeps import ServerSweeps

API_PREFIX = "/api/v1"
MAX_BATCH = 32 << 20  # bytes of frames in one ingest batch, after decompression
MAX_BLOB = 1 << 30  # bytes in one uploaded file (FULMEN_MAX_BLOB)
MAX_JSON = 16 << 20  # bytes in any other request body
DEFAULT_ENTITY = "local"  # the entity of an open server's requests that name none
UPLOAD_PATH = re.compile(r"/runs/[^/]+/files/|/blobs/[0-9a-f]{64}$")


@dataclass
class ServerConfig:
    """How ``fulmen server`` was started (``--data``, ``--db``, ``--blobs``, the auth switches,
    the HTTP boundary's settings: ``_security.SecurityConfig``)."""

    data: Path = field(default_factory=lambda: Path("~/.local/share/fulmen/server").expanduser())
    db: str | None = None
    require_auth: bool = False
    allow_anonymous: bool = False
    max_batch: int = MAX_BATCH
    # bytes in one uploaded file, and in all of one entity's files (None: no quota); their
    # defaults come from FULMEN_MAX_BLOB and FULMEN_ENTITY_QUOTA ("512M", "20G", bytes)
    max_blob: int = field(default_factory=lambda: env_bytes("FULMEN_MAX_BLOB") or MAX_BLOB)
    entity_quota: int | None = field(default_factory=lambda: env_bytes("FULMEN_ENTITY_QUOTA"))
    security: SecurityConfig = field(default_factory=SecurityConfig)
    # where blobs live (``_blobs.open_blobs``): None for <data>/blobs, a folder, or
    # s3://BUCKET/PREFIX; and the seconds a presigned download URL lives (0: downloads stream
    # through the server). Defaults from FULMEN_BLOBS and FULMEN_BLOBS_PRESIGN.
    blobs: str | None = field(default_factory=lambda: os.environ.get("FULMEN_BLOBS") or None)
    presign_seconds: int = field(default_factory=lambda: env_seconds("FULMEN_BLOBS_PRESIGN"))
    # seconds without a heartbeat after which a sweep agent is dead and its trial is settled
    # (FULMEN_SWEEP_AGENT_TIMEOUT; agents beat four times as often)
    agent_timeout: float = field(
        default_factory=lambda: env_timeout("FULMEN_SWEEP_AGENT_TIMEOUT", AGENT_TIMEOUT)
    )


AGENT_TIMEOUT = 60.0


def env_timeout(name: str, default: float) -> float:
    """The positive number of seconds in environment variable ``name``, or ``default``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}={text!r}: give a positive number of seconds, e.g. 60 or 2.5")
    return value


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def env_bytes(name: str) -> int | None:
    """The byte count in environment variable ``name`` (``123``, ``512K``, ``20M``, ``4G``,
    ``1T``; binary units), or None when it is unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)i?B?", text, re.IGNORECASE)
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f"{name}={text!r}: give a positive number of bytes, optionally with K, M, G or T "
            "(binary units), e.g. 512M or 4G"
        )
    return int(match[1]) * _UNITS[match[2].upper()]


def env_seconds(name: str) -> int:
    """The whole number of seconds in environment variable ``name``; 0 when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"{name}={text!r}: give a whole number of seconds (0: off)")
    return int(text)


class Resources:
    """The store and the blob store, opened on first use (building the app touches no disk)."""

    def __init__(
        self, config: ServerConfig, store: Store | None, blobs: BlobStore | None = None
    ) -> None:
        self.config = config
        self._store = store
        self._blobs = blobs
        self._sweeps: ServerSweeps | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.config.data, self.config.db)
        return self._store

    @property
    def sweeps(self) -> ServerSweeps:
        """The sweeps this server controls (on the store; ``_api_sweeps``)."""
        if self._sweeps is None:
            from fulmen.server._api_sweeps import ServerSweeps

            store = self.store
            with self._lock:
                if self._sweeps is None:
                    self._sweeps = ServerSweeps(store, self.config.agent_timeout)
        return self._sweeps

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            with self._lock:
                if self._blobs is None:
                    config = self.config
                    self._blobs = open_blobs(
                        config.blobs, config.data, presign_seconds=config.presign_seconds
                    )
        return self._blobs


async def _resources(request: Request) -> Resources:
    # async: a plain dependency would cost a trip through the thread pool on every request
    res: Resources = request.app.state.resources
    return res


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


ResDep = Annotated[Resources, Depends(_resources)]
ProjectDep = Annotated[tuple[str, str], Depends(_project)]
RunDep = Annotated[RunRef, Depends(_run_ref)]


def principal(request: Request) -> str:
    return str(request.state.principal)


async def read_body(request: Request, limit: int) -> bytes:
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


async def put_blob(res: Resources, entity: str, digest: str, request: Request) -> int:
    """Store the request's body as the blob ``digest`` of ``entity`` (checked); its size.

    What the client declares is checked before the body is read (so a client that sent
    ``Expect: 100-continue`` never sends it): the size (``Content-Length``) against the per-file
    limit and the entity's quota. The body is then hashed as it streams in, and refused past
    the limit, or when it does not hash to ``digest``; nothing of a refused body is kept."""
    config = res.config
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else None
    limit, why = config.max_blob, f"the per-file limit of {config.max_blob} bytes"
    if config.entity_quota is not None:
        store = res.store
        if not await run_in_threadpool(store.has_blob, entity, digest):  # held: costs nothing
            used = await run_in_threadpool(store.blob_bytes, entity)
            left = max(0, config.entity_quota - used)
            if left < limit:
                limit = left
                why = (
                    f"entity {entity!r}'s quota of {config.entity_quota} bytes ({used} bytes used)"
                )
    if size is not None and size > limit:
        raise HTTPException(413, f"the file's {size} bytes are over {why}")

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk

    try:
        return await res.blobs.put(digest, chunks(), limit)
    except BlobTooLarge as exc:
        raise HTTPException(413, f"the file is over {why}") from exc
    except DigestMismatch as exc:
        raise HTTPException(400, str(exc)) from exc


def blob_response(
    res: Resources,
    digest: str,
    path: str,
    *,
    content_type: str = "application/octet-stream",
    inline: bool = False,
) -> Response:
    """The blob ``digest`` as a download named after ``path``: streamed through the server, or,
    for an attachment from a store that presigns (``--blobs-presign``), a redirect to the
    object store. Inline answers (media the dashboard draws) always stream: the pages' content
    security policy allows only the server's own origin."""
    digest = _names.digest(digest)
    filename = path.rsplit("/", 1)[-1].replace('"', "")
    missing = f"the content of {path!r} has not been uploaded"
    if not inline:
        url = res.blobs.download_url(digest, filename=filename, content_type=content_type)
        if url is not None:
            if not res.blobs.exists(digest):
                raise NotFound(missing)
            # the URL is a credential for this blob only, and only for a while: never cached
            return RedirectResponse(url, 307, {"cache-control": "no-store"})
    try:
        blob = res.blobs.open(digest)
    except BlobMissing:
        raise NotFound(missing) from None
    disposition = "inline" if inline else "attachment"
    headers = {
        # never rendered by the browser on our origin: a stored HTML file cannot run scripts here
        "content-disposition": f'{disposition}; filename="{filename}"',
        "content-length": str(blob.size),
        "x-content-type-options": "nosniff",
    }
    return StreamingResponse(blob.chunks, 200, headers, content_type)


def missing_blobs(res: Resources, entity: str, digests: list[str]) -> list[str]:
    """Those of ``digests`` that ``entity`` does not hold (the store's record), or whose bytes
    the blob store lacks (a bucket emptied, a store copied without its blobs), in order."""
    lacking = set(res.store.missing_blobs(entity, digests))
    held = [d for d in digests if d not in lacking]
    lacking.update(res.blobs.missing(held))
    return [d for d in digests if d in lacking]
