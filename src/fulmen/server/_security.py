"""The HTTP boundary's defences against browsers on other origins, as ASGI middleware.

A page on any origin can make the user's browser send requests to a server it can reach, loopback
included, and a "simple" request (a form post, or ``fetch(..., {mode: "no-cors"})`` with a plain
body) goes out without asking the server first. ``BrowserGuard`` therefore refuses, before auth
and routing:

- any request whose ``Host`` is not one of the allowed names (on loopback: ``localhost``,
  ``127.0.0.1``, ``::1`` and what ``--allowed-host`` adds, any port), so a DNS-rebinding page
  (``Host: rebind.test``, resolving to 127.0.0.1) reaches nothing: 400;
- a state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as coming from another
  origin: an ``Origin`` that is not this server's (``null`` included) or a ``Sec-Fetch-Site`` other
  than ``same-origin``/``none``: 403;
- a state-changing request a browser could send without a preflight: its ``Content-Type`` missing
  or one of the CORS-safelisted types (``text/plain``, form encodings), unless it carries the
  custom header ``X-Fulmen-Client``. The client sends ``application/octet-stream`` and
  ``application/json``, which a cross-origin page cannot send without a preflight this server never
  answers: 415.

``SecurityHeaders`` adds to every answer the headers that keep a page of ours from being framed,
from leaking its URL (which may hold an anonymous space's secret name) and from running anything
but our own scripts: ``CSP`` (scripts only from ``/static``, data as JSON in
``<script type="application/json">``, never inline; images and media from the server's own routes,
``data:`` and ``blob:`` for the media viewer's canvas), ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer``, ``X-Content-Type-Options: nosniff``.

``AnonymousRateLimit`` bounds what one client address may do without a key on a server that takes
anonymous runs (``--allow-anonymous``): anonymous spaces created and new runs started per minute,
and bytes sent per minute; over a limit the answer is 429 with ``Retry-After``. The counts live in
this process (a restart forgets them; one server per data folder, so they are the server's).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_HOST = "*"  # --allowed-host '*': no Host check
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# the Content-Types a cross-origin page may send without a preflight (the Fetch standard's list)
SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
CLIENT_HEADER = "X-Fulmen-Client"
SAME_SITE_OK = frozenset({"same-origin", "none"})
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)


@dataclass(frozen=True)
class SecurityConfig:
    """The boundary's settings (``fulmen server`` options).

    ``allowed_hosts``: the names the ``Host`` header may carry (``None``: any); ``fulmen server``
    sets the loopback names on loopback, and only what ``--allowed-host`` gives elsewhere.
    ``anonymous_runs_per_minute``: anonymous spaces one client address may create, and new runs it
    may start, per minute (each counted on its own); ``anonymous_bytes_per_minute``: request bytes
    it may send per minute.
    """

    allowed_hosts: frozenset[str] | None = None
    anonymous_runs_per_minute: int = 20
    anonymous_bytes_per_minute: int = 64 << 20


def allowed_hosts(loopback: bool, extra: Iterable[str]) -> frozenset[str] | None:
    """The ``Host`` names to accept: the loopback names plus ``extra`` on loopback; off loopback
    only ``extra`` (none given: any host). ``*`` in ``extra`` turns the check off."""
    names = {_hostname(name) for name in extra}
    if ANY_HOST in names:
        return None
    if loopback:
        return frozenset(LOOPBACK_HOSTS | names)
    return frozenset(names) or None


def _hostname(host: str) -> str:
    """``host[:port]`` (``[v6]:port`` too) as a lower-case name without port or trailing dot."""
    host = host.strip().lower()
    if host == ANY_HOST:
        return host
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class BrowserGuard:
    """Refuses foreign ``Host`` names and cross-origin writes (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, config: SecurityConfig) -> None:
        self.app = app
        self.hosts = config.allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            why = self._refusal(scope)
            if why is not None:
                await refuse(send, *why)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        host = headers.get("host", "")
        if self.hosts is not None and _hostname(host) not in self.hosts:
            return 400, (
                f"Host {host!r} is not this server's (allowed: {', '.join(sorted(self.hosts))}; "
                "add a name with fulmen server --allowed-host NAME)"
            )
        if scope.get("method") not in WRITE_METHODS:
            return None
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in SAME_SITE_OK:
            return 403, f"a write from another site is refused (Sec-Fetch-Site: {site})"
        origin = headers.get("origin")
        if origin is not None and (
            origin == "null" or urlsplit(origin).netloc.lower() != host.lower()
        ):
            return 403, f"a write from another origin is refused (Origin {origin!r}, Host {host!r})"
        kind = headers.get("content-type", "").partition(";")[0].strip().lower()
        if (not kind or kind in SIMPLE_TYPES) and CLIENT_HEADER.lower() not in headers:
            return 415, (
                f"a write needs Content-Type application/json or application/octet-stream "
                f"(or the header {CLIENT_HEADER}), not {kind or 'none'}"
            )
        return None


class SecurityHeaders:
    """Adds ``HEADERS`` to every answer (a route's own value of one of them wins)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in HEADERS if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


WINDOW = 60.0  # seconds: the limits are per minute
RECORDS_PATH = re.compile(r"/entities/([^/]+)/projects/([^/]+)/runs/([^/]+)/records$")


class _Window:
    """Amounts in the last ``WINDOW`` seconds."""

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def used(self, now: float) -> int:
        while self.events and self.events[0][0] <= now - WINDOW:
            self.total -= self.events.popleft()[1]
        return self.total

    def add(self, now: float, amount: int) -> None:
        self.events.append((now, amount))
        self.total += amount

    def wait_for(self, now: float, amount: int, limit: int) -> int:
        """Seconds until ``amount`` more fits under ``limit``."""
        left = self.total + amount - limit
        for at, n in self.events:
            left -= n
            if left <= 0:
                return max(1, math.ceil(at + WINDOW - now))
        return math.ceil(WINDOW)


class AnonymousRateLimit:
    """Per client address, for anonymous requests only (see the module docstring).

    ``run_exists(entity, project, run_id)`` tells a new run from one that goes on; it runs in the
    thread pool (it reads the store)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        prefix: str,
        config: SecurityConfig,
        run_exists: Callable[[str, str, str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.prefix = prefix
        self.runs_limit = config.anonymous_runs_per_minute
        self.bytes_limit = config.anonymous_bytes_per_minute
        self.run_exists = run_exists
        self.clock = clock
        self.clients: dict[tuple[str, str], _Window] = {}

    def _window(self, client: str, kind: str, now: float) -> _Window:
        if len(self.clients) > 10_000:  # forget the clients that did nothing for a minute
            self.clients = {k: w for k, w in self.clients.items() if w.used(now)}
        return self.clients.setdefault((client, kind), _Window())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("state", {}).get("anonymous"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?",))[0]
        refusal = await self._check(scope, str(client))
        if refusal is not None:
            status, why, wait = refusal
            await refuse(send, status, why, [(b"retry-after", str(wait).encode())] if wait else [])
            return
        await self.app(scope, self._counted(receive, str(client)), send)

    async def _check(self, scope: Scope, client: str) -> tuple[int, str, int] | None:
        if scope.get("method") not in WRITE_METHODS:
            return None
        now = self.clock()
        path: str = scope["path"].removeprefix(self.prefix)
        kind = ""
        if path == "/anonymous":
            kind = "spaces"
        elif scope.get("method") == "POST" and (found := RECORDS_PATH.fullmatch(path)):
            from starlette.concurrency import run_in_threadpool

            if not await run_in_threadpool(self.run_exists, *found.groups()):
                kind = "runs"
        if kind:
            window = self._window(client, kind, now)
            if window.used(now) >= self.runs_limit:
                wait = window.wait_for(now, 1, self.runs_limit)
                return (
                    429,
                    (
                        f"anonymous clients may create at most {self.runs_limit} {kind} a minute "
                        f"(anonymous_runs_per_minute); retry in {wait} s"
                    ),
                    wait,
                )
            window.add(now, 1)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit():
            size = int(declared)
            if size > self.bytes_limit:
                return (
                    413,
                    (
                        f"the body ({size} bytes) is larger than an anonymous client may send in a "
                        f"minute ({self.bytes_limit} bytes: anonymous_bytes_per_minute)"
                    ),
                    0,
                )
            window = self._window(client, "bytes", now)
            if window.used(now) + size > self.bytes_limit:
                wait = window.wait_for(now, size, self.bytes_limit)
                return 429, self._too_many_bytes(wait), wait
        return None

    def _too_many_bytes(self, wait: int) -> str:
        return (
            f"anonymous clients may send at most {self.bytes_limit} bytes a minute "
            f"(anonymous_bytes_per_minute); retry in {wait} s"
        )

    def _counted(self, receive: Receive, client: str) -> Receive:
        async def counted() -> Message:
            message = await receive()
            size = len(message.get("body", b""))
            if size:
                now = self.clock()
                window = self._window(client, "bytes", now)
                if window.used(now) + size > self.bytes_limit:  # an undeclared length ran over
                    from fastapi import HTTPException

                    wait = window.wait_for(now, size, self.bytes_limit)
                    raise HTTPException(429, self._too_many_bytes(wait), {"Retry-After": str(wait)})
                window.add(now, size)
            return message

        return counted


async def refuse(
    send: Send, status: int, why: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer ``status`` with ``{"detail": why}``."""
    body = json.dumps({"detail": why}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
