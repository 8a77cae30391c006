"""The ASGI application: one FastAPI app whose routes all live under ``API_PREFIX``.

Every route is registered here, through routers, so that the auth layer the server issue adds wraps
them all in one place.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from fulmen.__about__ import __version__

API_PREFIX = "/api/v1"


class Health(BaseModel):
    """What ``GET /api/v1/health`` answers: the server is up, and which fulmen it runs."""

    status: str
    version: str


def _meta_router() -> APIRouter:
    router = APIRouter(tags=["meta"])

    @router.get("/health", response_model=Health, summary="Liveness and version")
    def health() -> Health:
        return Health(status="ok", version=__version__)

    return router


def create_app() -> FastAPI:
    """Build the server's ASGI app.

    The schema is served at ``/api/v1/openapi.json``, its docs page at ``/api/v1/docs``.
    """
    app = FastAPI(
        title="fulmen",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.include_router(_meta_router(), prefix=API_PREFIX)
    return app
