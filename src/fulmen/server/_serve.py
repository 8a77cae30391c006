"""``fulmen server``: the app under uvicorn, with the bind-address rule of the security model and
the connection limits (``ConnectionLimits``: timeouts for idle and half-sent requests, a cap on
connections at once)."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fulmen.server._blobs import BlobStoreUnavailable
from fulmen.server._deps import Resources
from fulmen.server._migrations import StoreTooNew
from fulmen.server._security import SecurityConfig, allowed_hosts
from fulmen.server.app import ServerConfig, create_app
from fulmen.server.store import StoreUnavailable, parse_database, redact

if TYPE_CHECKING:
    import asyncio

    import uvicorn

log = logging.getLogger("fulmen.server")

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def config_for(
    host: str,
    data: Path,
    db: str | None,
    *,
    insecure: bool,
    allow_anonymous: bool,
    extra_hosts: Iterable[str] = (),
    limits: SecurityConfig | None = None,
    blobs: str | None = None,
    presign_seconds: int | None = None,
) -> ServerConfig:
    """Any address but loopback requires API keys, unless the operator says ``--insecure``. On
    loopback the ``Host`` header must name loopback (or one of ``extra_hosts``); elsewhere it is
    checked only against ``extra_hosts``, when some are given. ``limits`` holds the anonymous rate
    limits (its ``allowed_hosts`` is replaced). ``blobs`` and ``presign_seconds``, when given,
    override FULMEN_BLOBS and FULMEN_BLOBS_PRESIGN."""
    loopback = is_loopback(host)
    security = dataclasses.replace(
        limits or SecurityConfig(), allowed_hosts=allowed_hosts(loopback, extra_hosts)
    )
    config = ServerConfig(
        data=data,
        db=db,
        require_auth=not loopback and not insecure,
        allow_anonymous=allow_anonymous,
        security=security,
    )
    if blobs is not None:
        config.blobs = blobs or None
    if presign_seconds is not None:
        config.presign_seconds = presign_seconds
    return config


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a connection may hold the server without doing its part, and how many at once.

    ``keep_alive``: seconds an idle connection stays open between requests; ``header_timeout``:
    seconds a request's line and headers may take to arrive, from the connection's start or the
    request's first byte (a client sending half a request is closed then); ``body_timeout``:
    seconds the server waits for the next part of a request's body (then 408 and the connection
    closes); ``max_connections``: at once, over it a request is answered 503;
    ``max_header_bytes``: the largest request head.
    """

    keep_alive: int = 5
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 256
    max_header_bytes: int = 16 << 10


def uvicorn_config(app: Any, limits: ConnectionLimits, **kw: Any) -> uvicorn.Config:
    """uvicorn's settings for ``app`` under ``limits`` (``kw``: host, port, ...), quiet."""
    import uvicorn

    return uvicorn.Config(
        BodyTimeout(app, limits.body_timeout),
        http=_http_protocol(limits.header_timeout),
        timeout_keep_alive=limits.keep_alive,
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        log_level="warning",
        access_log=False,
        **kw,
    )


class BodyTimeout:
    """Answers 408 when a request's body stops arriving for ``timeout`` seconds while the app
    waits for it (a client trickling a body held the connection and a worker for ever)."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def timed() -> Any:
            import asyncio

            from starlette.exceptions import HTTPException

            try:
                return await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                log.info("a request body stalled for %s s: 408", self.timeout)
                raise HTTPException(
                    408, f"the request body stopped arriving for {self.timeout} s"
                ) from None

        await self.app(scope, timed, send)


def _http_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol plus a timeout for the request head, which uvicorn lacks: its only
    timer is keep-alive, armed after a response, so a client that opened a connection, or sent
    half a request line, held it for ever."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and self.conn.their_state is h11.IDLE:
                self._arm()  # the next request's first bytes (after keep-alive)
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is in (or the request failed)
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                log.info("closing a connection whose request head took over %s s", header_timeout)
                self.transport.close()

    return HeadTimeoutH11Protocol


def describe(config: ServerConfig, host: str, port: int, *, has_keys: bool) -> list[str]:
    """What the server prints at start: where it listens, and who may read and write there. A
    server that requires keys but has none says that nothing can log to it yet, and how to fix
    that."""
    where = f"fulmen server: http://{host}:{port}/api/v1  data {config.data}"
    if config.db is not None:
        where += f"  database {redact(config.db)}"
    if config.require_auth:
        mode = "API keys required"
    elif is_loopback(host):
        mode = "open without keys (loopback: only programs on this machine can reach it)"
    else:
        mode = (
            f"OPEN TO THE NETWORK without keys (--insecure): anyone who can reach {host}:{port} "
            "can read and write every run"
        )
    if config.allow_anonymous:
        mode += "; anonymous runs accepted (--allow-anonymous, rate limited)"
    lines = [f"{where}  {mode}"]
    if config.require_auth and not has_keys:
        lines.append(
            "fulmen server: WARNING: no API key exists yet, so nothing can log to this server"
            + (" (except anonymous runs)" if config.allow_anonymous else "")
            + f"; create one with: fulmen server --data {config.data} create-key --entity NAME"
        )
    return lines


def check_blobs(res: Resources) -> None:
    """Exit with the reason when the blob store is misconfigured (a bucket that does not exist,
    credentials refused, boto3 missing); only warn when the object store does not answer yet."""
    config = res.config
    try:
        blobs = res.blobs
        blobs.check()
    except ValueError as exc:
        raise SystemExit(f"fulmen server: {exc}") from None
    except BlobStoreUnavailable as exc:
        log.warning("%s; uploads are answered 503 until it answers", exc)
        print(f"fulmen server: WARNING: {exc}", flush=True)
    if config.blobs:
        presign = f", downloads presigned for {config.presign_seconds} s"
        print(f"fulmen server: blobs {blobs.describe()}{presign if config.presign_seconds else ''}")


def serve(
    host: str,
    port: int,
    data: Path,
    db: str | None,
    *,
    insecure: bool = False,
    allow_anonymous: bool = False,
    extra_hosts: Iterable[str] = (),
    limits: SecurityConfig | None = None,
    connections: ConnectionLimits | None = None,
    blobs: str | None = None,
    presign_seconds: int | None = None,
) -> None:
    import fcntl

    import uvicorn

    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    data.chmod(0o700)  # owner-only: the database, the blobs, the lock
    engine = "sqlite" if db is None else parse_database(db)[0]
    if engine == "sqlite":  # PostgreSQL takes any number of server processes
        lock = os.open(data / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:  # one server per SQLite file: its store is the database's only writer
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            raise SystemExit(f"fulmen server: another fulmen server is using {data}") from None
    config = config_for(
        host,
        data,
        db,
        insecure=insecure,
        allow_anonymous=allow_anonymous,
        extra_hosts=extra_hosts,
        limits=limits,
        blobs=blobs,
        presign_seconds=presign_seconds,
    )
    app = create_app(config)
    try:
        app.state.resources.store  # noqa: B018 - open (and create) the database before listening
    except (StoreTooNew, StoreUnavailable) as exc:
        raise SystemExit(f"fulmen server: {exc}") from None
    check_blobs(app.state.resources)
    for line in describe(config, host, port, has_keys=app.state.resources.store.has_keys()):
        print(line, flush=True)
        if "WARNING" in line:
            log.warning("%s", line.removeprefix("fulmen server: WARNING: "))
    served = uvicorn_config(app, connections or ConnectionLimits(), host=host, port=port)
    uvicorn.Server(served).run()
