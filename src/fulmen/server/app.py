"""The ASGI application: one FastAPI app whose routes all live under ``API_PREFIX``.

The routes live in one module per resource, each an ``APIRouter`` included here:

    _api_runs      entities, projects, runs (the table, one run), ingest, heartbeat, console, system
    _api_history   chart data, one key's values, the unsampled export
    _api_files     a run's files, artifacts and their files, blobs
    _api_media     a run's media keys with their steps and references, media files inline
    _api_reports   reports (list, create, read, replace, delete), their data and HTML export
    _workspaces    a project's saved panel layout (the dashboard's workspace)
    _pages         the dashboard's pages, each one route for the page and its JSON twin
    _report_pages  the report pages (list, view, editor), with their JSON twins

plus the meta routes below (health, viewer, anonymous). Every route is wrapped by the one auth layer
(``_auth.AuthMiddleware``), which runs before routing, behind the browser defences
(``_security.BrowserGuard``: Host names, cross-origin writes). Handlers validate names
(``_names``), call the store (``store.Store``, no SQL in any of them) and answer JSON; the
resources they share (the store, the blob store, the settings) are ``_deps.Resources``, reached
through ``app.state``.
docs/http-api.md lists every endpoint.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from fulmen.__about__ import __version__
from fulmen.server import (
    _api_files,
    _api_history,
    _api_media,
    _api_reports,
    _api_runs,
    _api_sweeps,
    _workspaces,
)
from fulmen.server._auth import EVERYTHING, AuthMiddleware, BodyLimit
from fulmen.server._blobs import BlobStore, BlobStoreUnavailable
from fulmen.server._deps import (
    API_PREFIX,
    DEFAULT_ENTITY,
    MAX_JSON,
    UPLOAD_PATH,
    ResDep,
    Resources,
    principal,
)
from fulmen.server._deps import ServerConfig as ServerConfig  # noqa: PLC0414 (fulmen.server.app's)
from fulmen.server._pages import pages_router
from fulmen.server._report_pages import report_pages_router
from fulmen.server._security import AnonymousRateLimit, BrowserGuard, SecurityHeaders
from fulmen.server.store import Conflict, NotFound, Store, StoreFull, StoreUnavailable

log = logging.getLogger("fulmen.server")
meta_router = APIRouter(tags=["meta"])


class Health(BaseModel):
    """What ``GET /api/v1/health`` answers: the server is up, and which fulmen it runs."""

    status: str
    version: str


@meta_router.get("/health", response_model=Health, summary="Liveness and version")
def health() -> Health:
    return Health(status="ok", version=__version__)


@meta_router.get("/viewer", summary="Who the request's key belongs to")
def viewer(request: Request) -> dict[str, Any]:
    who = principal(request)
    entity = DEFAULT_ENTITY if who == EVERYTHING else who
    return {"entity": entity, "authenticated": who != EVERYTHING}


@meta_router.post("/anonymous", summary="Create an anonymous space (with --allow-anonymous)")
def anonymous(res: ResDep) -> dict[str, Any]:
    if not res.config.allow_anonymous:
        raise HTTPException(403, "this server does not accept anonymous runs")
    return {"entity": res.store.create_anonymous()}


def create_app(
    config: ServerConfig | None = None,
    *,
    store: Store | None = None,
    blobs: BlobStore | None = None,
) -> FastAPI:
    """Build the server's ASGI app.

    The schema is served at ``/api/v1/openapi.json`` (no docs page: FastAPI's loads Swagger UI
    from a CDN, and the server works offline). The store and the blob store open on the first
    request that needs them (``config.data``, ``config.blobs``), unless they are given.
    """
    config = config or ServerConfig()
    res = Resources(config, store, blobs)
    app = FastAPI(
        title="fulmen",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.resources = res
    for router in (
        meta_router,
        _api_runs.router,
        _api_files.files_router,
        _api_history.router,
        _api_media.router,
        _api_files.artifacts_router,
        _api_sweeps.router,
        _workspaces.router,
        _api_reports.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    # the dashboard's pages, after the API so that no page path can shadow an API route
    app.include_router(pages_router(lambda: res.store))
    app.include_router(report_pages_router(lambda: res.store))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 409)

    @app.exception_handler(BlobStoreUnavailable)
    async def blobs_down(request: Request, exc: BlobStoreUnavailable) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        detail = f"{exc}; retry later"
        return JSONResponse({"detail": detail}, 503, {"retry-after": str(exc.retry_after)})

    @app.exception_handler(StoreUnavailable)
    @app.exception_handler(StoreFull)
    async def unavailable(request: Request, exc: OSError) -> JSONResponse:
        # the database is down, restarting or full: nothing was written, the client retries
        wait = "60" if isinstance(exc, StoreFull) else "5"
        return JSONResponse({"detail": str(exc)}, 503, headers={"retry-after": wait})

    @app.exception_handler(PermissionError)
    async def forbidden(request: Request, exc: PermissionError) -> JSONResponse:
        return JSONResponse({"detail": "the path resolves outside its folder"}, 403)

    def limit_for(scope: Any) -> int:
        path, method = scope["path"], scope.get("method")
        if method == "POST" and path.endswith("/records"):
            return config.max_batch  # compressed; decompressed size is checked again
        if method == "PUT" and UPLOAD_PATH.search(path):
            return config.max_blob
        return MAX_JSON

    app.add_middleware(BodyLimit, limit_for=limit_for)  # inner: runs after auth

    def run_exists(entity: str, project: str, run_id: str) -> bool:
        try:
            res.store.run(entity, project, run_id)
        except (NotFound, HTTPException):
            return False
        return True

    if config.allow_anonymous:  # after auth, which marks the anonymous requests
        app.add_middleware(
            AnonymousRateLimit, prefix=API_PREFIX, config=config.security, run_exists=run_exists
        )
    app.add_middleware(
        AuthMiddleware,
        prefix=API_PREFIX,
        store=lambda: res.store,
        require_auth=config.require_auth,
        allow_anonymous=config.allow_anonymous,
    )
    app.add_middleware(BrowserGuard, config=config.security)  # before auth
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, refusals included
    return app
