"""The local controller: a sweep's whole state in ONE SQLite file, ``<fulmen dir>/sweeps.db``,
shared by every agent process on the machine.

The logic is ``_store.SweepStore`` (the same as the server's) on ``_sql.SqliteFile`` (every change
one ``BEGIN IMMEDIATE`` transaction; the tables are listed in ``_sql``). What is local is how an
agent is known to be alive and what became of a dead agent's trial: an agent holds an ``flock`` on
its own file under ``sweeps/agents/`` while it lives, so a running trial whose agent's lock is free
belongs to a dead agent, and the next claim settles it from its run folder (finished, failed or
killed as the run recorded, crashed when the run never ended or never started): marked, never
lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import socket
from pathlib import Path
from typing import Any

from fulmen.sweep._config import SweepConfig
from fulmen.sweep._controller import Claim, SweepRecord, Trial, sweep_id_of
from fulmen.sweep._sql import SqliteFile
from fulmen.sweep._store import AgentSeen, Outcome, SweepStore, new_id

DB_NAME = "sweeps.db"


class LocalController:
    """The Controller protocol on ``<root>/sweeps.db`` (root: the fulmen folder)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME
        self._agent_dir = self.root / "sweeps" / "agents"
        self._agent_dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, int] = {}  # agent id -> the fd holding its flock
        self.db = SqliteFile(self.path)
        self.store = SweepStore(
            self.db, alive=self._agent_alive, outcome=self._outcome, where=str(self.path)
        )

    def close(self) -> None:
        for agent_id in list(self._locks):
            self.unregister_agent(agent_id)
        self.db.close()

    def resolve(self, path: str) -> str:
        return sweep_id_of(path)

    # --- sweeps ---------------------------------------------------------------------------------

    def create(
        self,
        config: dict[str, Any],
        project: str,
        entity: str | None = None,
        prior_runs: list[Trial] | None = None,
        seed: int | None = None,
    ) -> str:
        """Store a new sweep; ``seed`` fixes its search (random draws, TPE) for reproducing it."""
        return self.store.create(config, project, entity, prior_runs, seed)

    def sweep(self, sweep_id: str) -> SweepRecord:
        return self.store.sweep(sweep_id)

    def sweeps(self) -> list[SweepRecord]:
        return self.store.sweeps()

    def set_state(self, sweep_id: str, state: str) -> None:
        self.store.set_state(sweep_id, state)

    # --- agents ---------------------------------------------------------------------------------

    def register_agent(self, sweep_id: str) -> str:
        self.sweep(sweep_id)  # a clear error for an unknown sweep
        agent_id = new_id(12)
        fd = os.open(self._agent_dir / f"{agent_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._locks[agent_id] = fd
        self.store.add_agent(sweep_id, agent_id, os.getpid(), socket.gethostname())
        return agent_id

    def unregister_agent(self, agent_id: str) -> None:
        self.store.end_agent(agent_id)
        fd = self._locks.pop(agent_id, None)
        if fd is not None:
            os.close(fd)
            with contextlib.suppress(OSError):
                (self._agent_dir / f"{agent_id}.lock").unlink()

    def _agent_alive(self, agent: AgentSeen) -> bool:
        if agent.id is None:
            return False
        if agent.id in self._locks:
            return True
        try:
            fd = os.open(self._agent_dir / f"{agent.id}.lock", os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True  # its agent holds it
        finally:
            os.close(fd)
        return False

    def _outcome(self, record: SweepRecord, trial: Trial) -> Outcome:
        run_dir = trial.run_dir
        marker = self.root / "sweeps" / record.id / f"trial-{trial.number}.json.run"
        if run_dir is None and marker.is_file():  # where the trial's init() put the run
            with contextlib.suppress(OSError):
                run_dir = marker.read_text().strip() or None
        return run_outcome(
            self.root, trial.run_id, run_dir, self.store.config(record.id, record.config)
        )

    # --- trials ---------------------------------------------------------------------------------

    def next_trial(self, sweep_id: str, agent_id: str) -> Claim:
        return self.store.next_trial(sweep_id, agent_id)

    def report(self, sweep_id: str, number: int, step: int, value: float) -> bool:
        return self.store.report(sweep_id, number, step, value)

    def finish_trial(
        self,
        sweep_id: str,
        number: int,
        state: str,
        value: float | None,
        run_dir: str | None = None,
    ) -> None:
        self.store.finish_trial(sweep_id, number, state, value, run_dir)

    def trials(self, sweep_id: str) -> list[Trial]:
        return self.store.trials(sweep_id)

    def run_of(
        self, entity: str | None, project: str, run_id: str, run_dir: str | None = None
    ) -> Any:
        """The ``ApiRun`` of a run of this machine (by folder, else by id), or None."""
        from fulmen.track._api import ApiRun
        from fulmen.track._layout import find_run_dir, log_path

        folder = Path(run_dir) if run_dir else find_run_dir(self.root, run_id)
        if folder is None or not log_path(folder).is_file():
            return None
        return ApiRun(folder)


def run_outcome(
    root: Path, run_id: str, run_dir: str | None, config: SweepConfig
) -> tuple[str, float | None, str | None]:
    """(state, metric value, run folder) of a trial's run as its run log records it; "crashed"
    when there is no run folder (the trial died before init())."""
    from fulmen.track._layout import find_run_dir, log_path
    from fulmen.track._replay import replay, state_of

    folder = Path(run_dir) if run_dir else find_run_dir(root, run_id)
    if folder is None or not log_path(folder).is_file():
        return "crashed", None, None
    data = replay(log_path(folder))
    state = state_of(folder, data)
    value = None
    if config.metric is not None:
        value = metric_value(data.summary.result(), config.metric.name)
    return state, value, str(folder)


def metric_value(summary: dict[str, Any], name: str) -> float | None:
    """The metric from a summary (a nested key "a.b" too), when it is a finite number."""
    value: Any = summary.get(name)
    if value is None and "." in name:
        node: Any = summary
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        value = node
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
