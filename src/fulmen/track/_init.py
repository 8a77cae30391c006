"""``init``: resolve the settings, end the active run, start a new one (or a stand-in)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fulmen.track._active import ACTIVE, install_exit_hooks
from fulmen.track._run import Run
from fulmen.track._settings import SETTINGS, resolve


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
