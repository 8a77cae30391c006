"""The one auth layer: an ASGI middleware in front of every route, present and future.

It runs before routing, so a route added later is covered without doing anything. Only the paths
in ``PUBLIC`` (liveness and the schema) pass without a principal. A request names
its key as ``Authorization: Bearer KEY`` (or HTTP Basic with the key as password, as wandb
clients send it). A wrong key is refused even where no key is required. Without a key:

- a server that does not require auth (loopback without ``--insecure`` needed) lets it through with
  access to everything;
- a server that does lets it reach only an anonymous space (``--allow-anonymous``), and only by
  that space's unguessable name, or create one (``POST /api/v1/anonymous``).

A key belongs to one entity: any path under ``/api/v1/entities/<name>/`` of another entity is
refused (403), except anonymous spaces, which anyone holding the link may read.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fulmen.server.store import Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC = frozenset({"/health", "/openapi.json"})
EVERYTHING = "*"  # the principal of an open (loopback) server without a key


def key_from_header(value: str) -> str | None:
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class AuthMiddleware:
    """Authenticate and scope every request under ``prefix`` (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        prefix: str,
        store: Callable[[], Store],
        require_auth: bool,
        allow_anonymous: bool,
    ) -> None:
        self.app = app
        self.prefix = prefix
        self.store = store
        self.require_auth = require_auth
        self.allow_anonymous = allow_anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        rel = path[len(self.prefix) :] if path.startswith(self.prefix) else path
        if rel in PUBLIC:
            await self.app(scope, receive, send)
            return
        principal, status, why = self._principal(scope, rel)
        if principal is None:
            # the dashboard's pages (outside the prefix) ask a browser for Basic credentials (the
            # key as password); the browser then sends them with the pages' API requests too
            await _refuse(send, status, why, basic=not path.startswith(self.prefix))
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        # no key on a server that requires one: an anonymous client (rate limited, _security)
        state["anonymous"] = self.require_auth and not any(
            name == b"authorization" for name, _ in scope.get("headers") or ()
        )
        await self.app(scope, receive, send)

    def _principal(self, scope: Scope, rel: str) -> tuple[str | None, int, str]:  # noqa: PLR0911
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        store = self.store()
        entity = _entity_in(rel)
        if raw is not None:
            key = key_from_header(raw.decode("latin-1"))
            owner = store.entity_for_key(key) if key else None
            if owner is None:
                return None, 401, "the API key is not valid"
            if entity is not None and entity != owner and not self._anonymous(store, entity):
                return None, 403, f"this key belongs to entity {owner!r}, not {entity!r}"
            return owner, 200, ""
        if not self.require_auth:
            return EVERYTHING, 200, ""
        if self.allow_anonymous:
            if rel == "/anonymous" and scope.get("method") == "POST":
                return EVERYTHING, 200, ""
            if entity is not None and self._anonymous(store, entity):
                return entity, 200, ""
        return None, 401, "this server requires an API key (fulmen login --key KEY)"

    def _anonymous(self, store: Store, entity: str) -> bool:
        return self.allow_anonymous and store.anonymous_exists(entity)


def _entity_in(rel: str) -> str | None:
    parts = rel.split("/")
    if len(parts) >= 3 and parts[1] == "entities":
        return parts[2]  # already percent-decoded once by the server, as the router sees it
    return None


async def _refuse(send: Send, status: int, why: str, *, basic: bool = False) -> None:
    body = json.dumps({"detail": why}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        scheme = b"Basic" if basic else b"Bearer"
        headers.append((b"www-authenticate", scheme + b' realm="fulmen"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Caps every request body: ``limit_for(scope)`` bytes, counted as they arrive (a declared
    ``Content-Length`` over the cap is refused at once), so no route reads an unbounded body."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, f"the body is larger than {limit} bytes")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                from fastapi import HTTPException

                raise HTTPException(413, f"the body is larger than {limit} bytes")
            return message

        await self.app(scope, counted, send)
