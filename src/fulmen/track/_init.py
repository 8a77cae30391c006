"""``init``: resolve the settings, end the active run, start a new one (or a stand-in)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from fulmen.track._active import ACTIVE, install_exit_hooks
from fulmen.track._run import Run
from fulmen.track._settings import (
    DEFAULT_SETTINGS_FILE,
    SETTINGS,
    SETTINGS_FILE_VARIABLE,
    resolve,
    settings_file,
)


def init(
    project: str | None = None,
    entity: str | None = None,
    name: str | None = None,
    id: str | None = None,
    resume: bool | str | None = None,
    dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    anonymous: bool | str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    tags: list[str] | tuple[str, ...] | None = None,
    notes: str | None = None,
    config: Any = None,
    reinit: bool | str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Any:
    """Start a run and make it the active one (see docs/track.md)."""
    arguments: dict[str, Any] = dict(settings or {})
    given = {
        "project": project,
        "entity": entity,
        "name": name,
        "id": id,
        "resume": resume,
        "dir": None if dir is None else os.fspath(dir),
        "mode": mode,
        "anonymous": anonymous,
        "group": group,
        "job_type": job_type,
        "tags": tags,
        "notes": notes,
    }
    arguments.update({k: v for k, v in given.items() if v is not None})
    unknown = set(arguments) - set(SETTINGS)
    if unknown:
        raise TypeError(f"init() got unknown settings: {', '.join(sorted(unknown))}")
    trial = None
    if os.environ.get("FULMEN_SWEEP_PARAM_PATH"):  # inside a sweep trial: see fulmen.sweep
        from fulmen.sweep._trial import current

        trial = current()
        if trial is not None:
            trial.arguments(arguments)
            config = trial.config(config)
    resolved = resolve(arguments)
    for previous in list(ACTIVE):
        previous.finish()
    run: Any
    if resolved.mode == "disabled":
        from fulmen.track._disabled import DisabledRun

        run = DisabledRun(resolved, config)
    else:
        run = Run(resolved, config) if trial is None else trial.start(resolved, config)
        install_exit_hooks()
    ACTIVE.append(run)
    return run


def login(
    key: str | None = None,
    relogin: bool | None = None,
    host: str | None = None,
    anonymous: str | None = None,
    timeout: int | None = None,
    verify: bool = False,
    force: bool | None = None,
) -> bool:
    """W&B's ``login``: with ``key`` (and ``host``), store them in the settings file (the one
    ``FULMEN_SETTINGS_FILE`` names, else ~/.config/fulmen/settings, mode 0600) so that later runs
    log to that server. Returns whether an API key is configured now; it never prompts (offline
    logging needs no key). ``verify=True`` raises NotImplementedError."""
    if verify:
        raise NotImplementedError(
            "login(verify=True) is not supported: fulmen checks the key at the first upload"
        )
    if key is not None or host is not None:
        _write_settings_file({"api_key": key, "base_url": host})
    if os.environ.get("FULMEN_API_KEY") or os.environ.get("WANDB_API_KEY"):
        return True
    return bool(settings_file().get("api_key"))


def _write_settings_file(values: Mapping[str, str | None]) -> None:
    import configparser
    from pathlib import Path

    path = Path(os.environ.get(SETTINGS_FILE_VARIABLE) or DEFAULT_SETTINGS_FILE).expanduser()
    parser = configparser.ConfigParser()
    if path.is_file():
        parser.read(path)
    if not parser.has_section("default"):
        parser.add_section("default")
    for name, value in values.items():
        if value is not None:
            if not isinstance(value, str) or not value or "\n" in value:
                raise ValueError(f"login: {name} must be a non-empty one-line string")
            parser.set("default", name, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a secret
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        parser.write(f)


def termlog(
    string: str = "", newline: bool = True, repeat: bool = True, prefix: bool = True
) -> None:
    """W&B's ``termlog``: ``"fulmen: " + string`` on stderr (nothing when ``silent``)."""
    if _silent():
        return
    text = f"fulmen: {string}" if prefix and string else string
    sys.stderr.write(text + ("\n" if newline else ""))


def _silent() -> bool:
    for variable in ("FULMEN_SILENT", "WANDB_SILENT"):
        value = os.environ.get(variable)
        if value is not None:
            return value.strip().lower() in ("1", "true", "yes", "on")
    return False
