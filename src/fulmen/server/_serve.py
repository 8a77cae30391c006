"""``fulmen server``: the app under uvicorn, with the bind-address rule of the security model."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from fulmen.server._migrations import StoreTooNew
from fulmen.server._security import SecurityConfig, allowed_hosts
from fulmen.server.app import ServerConfig, create_app

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
) -> ServerConfig:
    """Any address but loopback requires API keys, unless the operator says ``--insecure``. On
    loopback the ``Host`` header must name loopback (or one of ``extra_hosts``); elsewhere it is
    checked only against ``extra_hosts``, when some are given. ``limits`` holds the anonymous rate
    limits (its ``allowed_hosts`` is replaced)."""
    loopback = is_loopback(host)
    security = dataclasses.replace(
        limits or SecurityConfig(), allowed_hosts=allowed_hosts(loopback, extra_hosts)
    )
    return ServerConfig(
        data=data,
        db=db,
        require_auth=not loopback and not insecure,
        allow_anonymous=allow_anonymous,
        security=security,
    )


def describe(config: ServerConfig, host: str, port: int, *, has_keys: bool) -> list[str]:
    """What the server prints at start: where it listens, and who may read and write there. A
    server that requires keys but has none says that nothing can log to it yet, and how to fix
    that."""
    where = f"fulmen server: http://{host}:{port}/api/v1  data {config.data}"
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
        host,
        data,
        db,
        insecure=insecure,
        allow_anonymous=allow_anonymous,
        extra_hosts=extra_hosts,
        limits=limits,
    )
    app = create_app(config)
    try:
        app.state.resources.store  # noqa: B018 - open (and create) the database before listening
    except StoreTooNew as exc:
        raise SystemExit(f"fulmen server: {exc}") from None
    for line in describe(config, host, port, has_keys=app.state.resources.store.has_keys()):
        print(line, flush=True)
        if "WARNING" in line:
            log.warning("%s", line.removeprefix("fulmen server: WARNING: "))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
