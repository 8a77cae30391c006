"""fulmen.server: the self-hosted tracking server: the HTTP API with its OpenAPI schema, ingest, the
store and the dashboard.

Depends on the tracker's record format only, never on torch, ``fulmen.train`` or
``fulmen.loggers``. The web stack is FastAPI (an ASGI framework that writes the OpenAPI schema from
the route signatures) served by uvicorn.
"""

from fulmen.server._deps import API_PREFIX
from fulmen.server.app import create_app

__all__ = ["API_PREFIX", "create_app"]
