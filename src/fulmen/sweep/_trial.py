"""The trial's side: what ``fulmen.track.init()`` does inside a sweep trial.

The agent describes the trial in environment variables (so a subprocess and a function in the
agent's own process see the same thing)::

    FULMEN_SWEEP_ID          the sweep's id
    FULMEN_RUN_ID            the trial's run id (init() reads it as every FULMEN_RUN_ID)
    FULMEN_SWEEP_PARAM_PATH  a JSON file: {"sweep_id", "number", "run_id", "params": {...}}

``init()`` then makes a :class:`SweepRun`: the run id, project and entity are the sweep's (an
argument saying otherwise is ignored with a warning, as W&B does), the parameters are the config,
and the keys they set are locked: a later write to one (``config.update``, ``log_hyperparams``) is
ignored with W&B's warning "Config item 'lr' was locked by 'sweep' (ignored update)". The run's
folder is written next to the parameters file (``<file>.run``) for the agent to read the metric
from. A stop (hyperband, a canceled sweep) reaches the trial as SIGUSR1 (a subprocess; SIGTERM stays
the tracker's "killed") or as a
KeyboardInterrupt raised in the main thread (a function trial): the trial shuts down as after
Ctrl-C (the Trainer finalizes its loggers, checkpoints on disk stay) and the run ends "stopped".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from fulmen.track._config import Config, as_mapping
from fulmen.track._run import Run
from fulmen.track._values import jsonable

log = logging.getLogger("fulmen.sweep")
PARAM_PATH = "FULMEN_SWEEP_PARAM_PATH"
SWEEP_ID = "FULMEN_SWEEP_ID"
AGENT_PID = "FULMEN_SWEEP_AGENT_PID"  # a trial in the agent's own process leaves signals to it
# Set (by the agent, or the STOP_SIGNAL handler) when the sweep asks the running trial to stop.
STOP = threading.Event()
STOP_SIGNAL = signal.SIGUSR1


class LockedConfig(Config):
    """A run config whose sweep keys cannot change (W&B's locked config items)."""

    _locked: frozenset[str]
    _warned: set[str]

    @classmethod
    def replacing(cls, config: Config, locked: frozenset[str], on_change: Any) -> LockedConfig:
        new = cls(on_change)
        object.__setattr__(new, "_data", config.as_dict())  # the same values, no new record
        object.__setattr__(new, "_locked", locked)
        object.__setattr__(new, "_warned", set())
        return new

    def update(self, d: Any = None, allow_val_change: bool = False, **kwargs: Any) -> None:
        items = as_mapping(d)
        items.update(kwargs)
        kept = {}
        for key, value in items.items():
            if key in self._locked:
                if jsonable(value) != self._data.get(key) and key not in self._warned:
                    self._warned.add(key)
                    log.warning("Config item '%s' was locked by 'sweep' (ignored update).", key)
                continue
            kept[key] = value
        if kept:
            Config.update(self, kept, allow_val_change=allow_val_change)


class SweepRun(Run):
    """A run started inside a sweep trial: locked config, and "stopped" when the sweep stops it."""

    def __init__(self, settings: Any, config: Any, trial: TrialContext) -> None:
        super().__init__(settings, config)
        self.sweep_id = trial.sweep_id
        self.config = LockedConfig.replacing(
            self.config, frozenset(trial.params), self._config_changed
        )
        with contextlib.suppress(OSError):  # the agent also finds the run by its id
            Path(trial.marker).write_text(str(self.run_dir))
        own_process = os.environ.get(AGENT_PID) == str(os.getpid())
        if not own_process and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(STOP_SIGNAL, _stop_on_signal)

    def _finish(self, exit_code: int, state: str) -> None:
        if STOP.is_set() and state in ("killed", "failed", "finished"):
            exit_code, state = 0, "stopped"
        super()._finish(exit_code, state)


class TrialContext:
    """The trial the agent described in the environment."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path = path
        self.marker = f"{path}.run"
        self.sweep_id = str(data["sweep_id"])
        self.run_id = str(data["run_id"])
        self.project = data.get("project")
        self.entity = data.get("entity")
        self.params: dict[str, Any] = dict(data["params"])

    def arguments(self, arguments: MutableMapping[str, Any]) -> None:
        """The sweep's id, project and entity win over init()'s arguments (as in W&B)."""
        for name, value in (("id", self.run_id), ("project", self.project),
                            ("entity", self.entity)):  # fmt: skip
            given = arguments.get(name)
            if given is not None and given != value and value is not None:
                log.warning("Ignored fulmen.track.init() arg %s when running a sweep.", name)
            if value is not None:
                arguments[name] = value
        arguments.pop("resume", None)

    def start(self, settings: Any, config: Any) -> SweepRun:
        return SweepRun(settings, config, self)

    def config(self, config: Any) -> dict[str, Any]:
        """The user's config with the sweep's parameters over it."""
        merged = as_mapping(config, "config")
        for key, value in self.params.items():
            if key in merged and jsonable(merged[key]) != jsonable(value):
                log.warning("Config item '%s' was locked by 'sweep' (ignored update).", key)
            merged[key] = value
        return merged


def current() -> TrialContext | None:
    """The trial this process is in, if init() has not joined it yet."""
    path = os.environ.get(PARAM_PATH)
    if not path or os.path.exists(f"{path}.run"):
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        log.warning("sweep trial file %s unreadable (%s); not joining the sweep", path, exc)
        return None
    return TrialContext(Path(path), data)


def _stop_on_signal(signum: int, frame: Any) -> None:
    # The sweep stops this trial: shut down as after Ctrl-C, and the run ends "stopped".
    STOP.set()
    signal.signal(signum, signal.SIG_IGN)  # a second one must not cut the shutdown short
    raise KeyboardInterrupt("stopped by the sweep")
