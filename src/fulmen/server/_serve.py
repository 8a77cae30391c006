"""``fulmen server``: the app under uvicorn, with the bind-address rule of the security model."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from fulmen.server._migrations import StoreTooNew
from fulmen.server._security import SecurityConfig, allowed_hosts
from fulmen.server.app import ServerConfig, create_app

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
) -> ServerConfig:
    """Any address but loopback requires API keys, unless the operator says ``--insecure``. On
    loopback the ``Host`` header must name loopback (or one of ``extra_hosts``); elsewhere it is
    checked only against ``extra_hosts``, when some are given."""
    loopback = is_loopback(host)
    return ServerConfig(
        data=data,
        db=db,
        require_auth=not loopback and not insecure,
        allow_anonymous=allow_anonymous,
        security=SecurityConfig(allowed_hosts=allowed_hosts(loopback, extra_hosts)),
    )


def serve(
    host: str,
    port: int,
    data: Path,
    db: str | None,
    *,
    insecure: bool = False,
    allow_anonymous: bool = False,
    extra_hosts: Iterable[str] = (),
) -> None:
    import fcntl

    import uvicorn

    data.mkdir(parents=True, exist_ok=True)
    lock = os.open(data / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:  # one server per data folder: its store is the database's only writer
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        raise SystemExit(f"fulmen server: another fulmen server is using {data}") from None
    config = config_for(
        host, data, db, insecure=insecure, allow_anonymous=allow_anonymous, extra_hosts=extra_hosts
    )
    app = create_app(config)
    try:
        app.state.resources.store  # noqa: B018 - open (and create) the database before listening
    except StoreTooNew as exc:
        raise SystemExit(f"fulmen server: {exc}") from None
    mode = "API keys required" if config.require_auth else "open (loopback)"
    print(f"fulmen server: http://{host}:{port}/api/v1  data {data}  {mode}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
