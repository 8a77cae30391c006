"""fulmen.track: the experiment tracker client (runs, config, history, summary, artifacts, Api).

Importing it must not import torch: torch is imported inside the functions that receive a tensor or
a module. ``import fulmen.track as wandb`` is the porting path for wandb scripts. The module-level
functions are one-liners over the active run (the one the last ``init()`` returned).
"""

from __future__ import annotations

from typing import Any

from fulmen.track import plot
from fulmen.track._active import active
from fulmen.track._api import Api, ApiRun
from fulmen.track._artifacts import Artifact, ArtifactEntry
from fulmen.track._config import Config, Summary
from fulmen.track._init import init, login, termlog
from fulmen.track._media import Audio, Html, Image, Video
from fulmen.track._run import AlertLevel, Error, Run, StepWarning
from fulmen.track._settings import UserSettings as Settings
from fulmen.track._table import Table
from fulmen.track._values import Histogram

__all__ = [
    "AlertLevel",
    "Api",
    "ApiRun",
    "Artifact",
    "ArtifactEntry",
    "Audio",
    "Config",
    "Error",
    "Histogram",
    "Html",
    "Image",
    "Run",
    "Settings",
    "StepWarning",
    "Summary",
    "Table",
    "Video",
    "agent",
    "alert",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_artifact",
    "login",
    "mark_preempting",
    "plot",
    "run",
    "save",
    "summary",
    "sweep",
    "termlog",
    "unwatch",
    "use_artifact",
    "watch",
]


class _PreInit:
    """``config``/``summary`` before ``init()``: any use raises, naming it (W&B's rule)."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _refuse(self, key: str) -> Error:
        return Error(f"You must call fulmen.track.init() before fulmen.track.{self._name}.{key}")

    def __getattr__(self, key: str) -> Any:
        raise self._refuse(key)

    def __setattr__(self, key: str, value: Any) -> None:
        raise self._refuse(key)

    def __getitem__(self, key: str) -> Any:
        raise self._refuse(key)

    def __setitem__(self, key: str, value: Any) -> None:
        raise self._refuse(key)


def _require_run(function: str) -> Any:
    current = active()
    if current is None:
        raise Error(f"call fulmen.track.init() before fulmen.track.{function}()")
    return current


def __getattr__(name: str) -> Any:
    # run, config and summary follow the active run (wandb.run is None before init()).
    if name == "run":
        return active()
    if name in ("config", "summary"):
        current = active()
        if current is None:  # as in W&B: using them before init() is an error, not lost data
            return _PreInit(name)
        return getattr(current, name)
    raise AttributeError(f"module 'fulmen.track' has no attribute {name!r}")


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """``run.log`` on the active run."""
    _require_run("log").log(data, step=step, commit=commit)


def define_metric(name: str, *args: Any, **kwargs: Any) -> Any:
    """``run.define_metric`` on the active run."""
    return _require_run("define_metric").define_metric(name, *args, **kwargs)


def alert(title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
    """``run.alert`` on the active run."""
    _require_run("alert").alert(title, text, level, wait_duration)


def mark_preempting() -> None:
    """``run.mark_preempting`` on the active run."""
    _require_run("mark_preempting").mark_preempting()


def watch(models: Any, *args: Any, **kwargs: Any) -> None:
    """``run.watch`` on the active run."""
    _require_run("watch").watch(models, *args, **kwargs)


def unwatch(models: Any = None) -> None:
    """``run.unwatch`` on the active run."""
    _require_run("unwatch").unwatch(models)


def log_artifact(artifact: Any, *args: Any, **kwargs: Any) -> Any:
    """``run.log_artifact`` on the active run."""
    return _require_run("log_artifact").log_artifact(artifact, *args, **kwargs)


def use_artifact(artifact_or_name: Any, type: str | None = None) -> Any:
    """``run.use_artifact`` on the active run."""
    return _require_run("use_artifact").use_artifact(artifact_or_name, type=type)


def save(path: str, base_path: str | None = None) -> None:
    """``run.save`` on the active run."""
    _require_run("save").save(path, base_path=base_path)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """``run.finish`` on the active run; nothing when there is none."""
    current = active()
    if current is not None:
        current.finish(exit_code=exit_code, quiet=quiet)


def sweep(
    sweep: Any, entity: str | None = None, project: str | None = None, prior_runs: Any = None
) -> str:
    """Create a sweep from a W&B sweep config (dict or YAML path); its id (see docs/sweeps.md)."""
    from fulmen.sweep import sweep as create

    return create(sweep, entity=entity, project=project, prior_runs=prior_runs)


def agent(
    sweep_id: str,
    function: Any = None,
    entity: str | None = None,
    project: str | None = None,
    count: int | None = None,
) -> int:
    """Run trials of a sweep here (``function``, or its program); see docs/sweeps.md."""
    from fulmen.sweep import agent as run_agent

    return run_agent(sweep_id, function=function, entity=entity, project=project, count=count)
