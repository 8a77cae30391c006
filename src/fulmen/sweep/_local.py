"""The local controller: a sweep's whole state in ONE SQLite file, ``<fulmen dir>/sweeps.db``,
shared by every agent process on the machine. All of fulmen.sweep's SQL is in this module.

Every change is one ``BEGIN IMMEDIATE`` transaction (SQLite's write lock, taken up front), so two
agents that ask for a trial at the same moment are served one after the other, each seeing the
trials the other claimed; the ``(sweep_id, key)`` unique index makes a repeated configuration
impossible even if the search proposed one. An agent holds an ``flock`` on its own file under
``sweeps/agents/`` while it lives: a running trial whose agent's lock is free belongs to a dead
agent, and the next claim settles it from its run folder (finished, failed or killed as the run
recorded, crashed when the run never ended or never started): marked, never lost.

Tables::

    sweeps(id, entity, project, name, config JSON, state, created, seed, exhausted)
    trials(sweep_id, number, run_id, params JSON, latent JSON, key, state, value, agent,
           run_dir, attrs JSON, started, ended)        primary key (sweep_id, number)
    reports(sweep_id, number, step, value)             the metric per iteration (hyperband)
    agents(id, sweep_id, pid, host, started, ended)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fulmen.sweep._config import SweepConfig, parse
from fulmen.sweep._controller import (
    SWEEP_STATES,
    Claim,
    SweepRecord,
    Trial,
)
from fulmen.sweep._engine import StudyCache, propose, should_stop

DB_NAME = "sweeps.db"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, entity TEXT, project TEXT NOT NULL, name TEXT, config TEXT NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, seed INTEGER NOT NULL,
    exhausted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS trials (
    sweep_id TEXT NOT NULL, number INTEGER NOT NULL, run_id TEXT NOT NULL, params TEXT NOT NULL,
    latent TEXT NOT NULL, key TEXT, state TEXT NOT NULL, value REAL, agent TEXT, run_dir TEXT,
    attrs TEXT NOT NULL DEFAULT '{}', started REAL, ended REAL,
    PRIMARY KEY (sweep_id, number));
CREATE UNIQUE INDEX IF NOT EXISTS trials_key ON trials (sweep_id, key);
CREATE INDEX IF NOT EXISTS trials_state ON trials (sweep_id, state);
CREATE TABLE IF NOT EXISTS reports (
    sweep_id TEXT NOT NULL, number INTEGER NOT NULL, step INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (sweep_id, number, step));
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY, sweep_id TEXT NOT NULL, pid INTEGER, host TEXT, started REAL,
    ended REAL);
"""


def new_id(n: int = 8) -> str:
    return "".join(_ALPHABET[b % 36] for b in os.urandom(n))


class LocalController:
    """The Controller protocol on ``<root>/sweeps.db`` (root: the fulmen folder)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME
        self._agent_dir = self.root / "sweeps" / "agents"
        self._agent_dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, int] = {}  # agent id -> the fd holding its flock
        self._configs: dict[str, SweepConfig] = {}
        self._studies = StudyCache()  # Optuna's view of each sweep, kept in step with the file
        self._ended: dict[str, dict[int, Trial]] = {}  # sweep -> its ended trials, read once
        # One connection per controller, shared by the agent's threads (the trial watcher) under
        # a lock; other processes have their own connection.
        self._mutex = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA busy_timeout = 60000")
        with contextlib.suppress(sqlite3.OperationalError):  # another process switched it first
            self._db.execute("PRAGMA journal_mode = WAL")
        with self._write() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def close(self) -> None:
        for agent_id in list(self._locks):
            self.unregister_agent(agent_id)
        self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

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
        parsed = parse(config)
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        with self._write() as db:
            sweep_id = new_id()
            while db.execute("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)).fetchone():
                sweep_id = new_id()
            db.execute(
                "INSERT INTO sweeps (id, entity, project, name, config, state, created, seed)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (sweep_id, entity, project, parsed.name, json.dumps(config), time.time(), seed),
            )
            for number, prior in enumerate(prior_runs or []):
                db.execute(
                    "INSERT INTO trials (sweep_id, number, run_id, params, latent, key, state,"
                    " value, run_dir, started, ended) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                    (sweep_id, number, prior.run_id, json.dumps(prior.params),
                     json.dumps(prior.latent), prior.state, _real(prior.value), prior.run_dir,
                     prior.started, prior.ended),
                )  # fmt: skip
        return sweep_id

    def sweep(self, sweep_id: str) -> SweepRecord:
        with self._mutex:
            row = self._db.execute(
                "SELECT id, entity, project, name, config, state, created, seed FROM sweeps"
                " WHERE id = ?",
                (sweep_id,),
            ).fetchone()
        if row is None:
            raise KeyError(f"no sweep {sweep_id!r} in {self.path}")
        return SweepRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), *row[5:])

    def sweeps(self) -> list[SweepRecord]:
        with self._mutex:
            ids = [r[0] for r in self._db.execute("SELECT id FROM sweeps ORDER BY created")]
        return [self.sweep(i) for i in ids]

    def set_state(self, sweep_id: str, state: str) -> None:
        if state not in SWEEP_STATES:
            raise ValueError(f"sweep state must be one of {', '.join(SWEEP_STATES)}, got {state!r}")
        with self._write() as db:
            current = self._state(db, sweep_id)
            if current in ("finished", "canceled") and state != current:
                raise ValueError(f"sweep {sweep_id} is {current}; it cannot become {state}")
            if state == "running" and current not in ("paused", "stopped", "running"):
                raise ValueError(f"sweep {sweep_id} is {current}; only a paused sweep resumes")
            db.execute("UPDATE sweeps SET state = ? WHERE id = ?", (state, sweep_id))

    def _state(self, db: sqlite3.Connection, sweep_id: str) -> str:
        row = db.execute("SELECT state FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise KeyError(f"no sweep {sweep_id!r} in {self.path}")
        return str(row[0])

    def _config(self, sweep_id: str, raw: str) -> SweepConfig:
        config = self._configs.get(sweep_id)
        if config is None:
            config = self._configs[sweep_id] = parse(json.loads(raw))
        return config

    # --- agents ---------------------------------------------------------------------------------

    def register_agent(self, sweep_id: str) -> str:
        self.sweep(sweep_id)  # a clear error for an unknown sweep
        agent_id = new_id(12)
        fd = os.open(self._agent_dir / f"{agent_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._locks[agent_id] = fd
        with self._write() as db:
            db.execute(
                "INSERT INTO agents (id, sweep_id, pid, host, started) VALUES (?, ?, ?, ?, ?)",
                (agent_id, sweep_id, os.getpid(), socket.gethostname(), time.time()),
            )
        return agent_id

    def unregister_agent(self, agent_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE agents SET ended = ? WHERE id = ?", (time.time(), agent_id))
        fd = self._locks.pop(agent_id, None)
        if fd is not None:
            os.close(fd)
            with contextlib.suppress(OSError):
                (self._agent_dir / f"{agent_id}.lock").unlink()

    def _agent_alive(self, agent_id: str | None) -> bool:
        if agent_id is None:
            return False
        if agent_id in self._locks:
            return True
        try:
            fd = os.open(self._agent_dir / f"{agent_id}.lock", os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True  # its agent holds it
        finally:
            os.close(fd)
        return False

    # --- trials ---------------------------------------------------------------------------------

    def next_trial(self, sweep_id: str, agent_id: str) -> Claim:
        from fulmen.track._layout import new_id as new_run_id

        with self._write() as db:
            row = db.execute(
                "SELECT state, config, seed, exhausted FROM sweeps WHERE id = ?", (sweep_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no sweep {sweep_id!r} in {self.path}")
            state, raw, seed, exhausted = row
            config = self._config(sweep_id, raw)
            self._reap(db, sweep_id, config)
            if state == "paused":
                return Claim("wait", reason="the sweep is paused")
            if state != "running":
                return Claim("done", reason=f"the sweep is {state}")
            number = db.execute(
                "SELECT COUNT(*) FROM trials WHERE sweep_id = ?", (sweep_id,)
            ).fetchone()[0]
            # only bayes reads the trials so far (grid and random need their keys alone)
            trials = self._trials_cached(db, sweep_id) if config.method == "bayes" else None
            reason = ""
            if config.run_cap is not None and number >= config.run_cap:
                reason = f"run_cap {config.run_cap} reached"
            elif exhausted:
                reason = "the sweep has no trials left"
            proposal = None
            if not reason:
                keys = {r[0] for r in db.execute(
                    "SELECT key FROM trials WHERE sweep_id = ? AND key IS NOT NULL", (sweep_id,)
                )}  # fmt: skip
                try:
                    proposal = propose(config, trials, keys, seed, number, self._studies, sweep_id)
                except BaseException:
                    self._studies.forget(sweep_id)
                    raise
                if proposal is None:
                    reason = "every configuration has been tried"
            if proposal is None:
                db.execute("UPDATE sweeps SET exhausted = 1 WHERE id = ?", (sweep_id,))
                self._maybe_finished(db, sweep_id)
                return Claim("done", reason=reason)
            trial = Trial(
                sweep_id, number, new_run_id(), proposal.params, latent=proposal.latent,
                agent=agent_id, started=time.time(),
            )  # fmt: skip
            db.execute(
                "INSERT INTO trials (sweep_id, number, run_id, params, latent, key, state, agent,"
                " started) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (sweep_id, number, trial.run_id, json.dumps(trial.params),
                 json.dumps(trial.latent), proposal.key, agent_id, trial.started),
            )  # fmt: skip
            if config.run_cap is not None and number + 1 >= config.run_cap:
                db.execute("UPDATE sweeps SET exhausted = 1 WHERE id = ?", (sweep_id,))
            return Claim("trial", trial)

    def report(self, sweep_id: str, number: int, step: int, value: float) -> bool:
        with self._write() as db:
            raw = db.execute("SELECT config FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
            if raw is None:
                raise KeyError(f"no sweep {sweep_id!r} in {self.path}")
            config = self._config(sweep_id, raw[0])
            db.execute(
                "INSERT OR REPLACE INTO reports (sweep_id, number, step, value) VALUES (?,?,?,?)",
                (sweep_id, number, step, float(value)),
            )
            if config.early_terminate is None:
                return False
            trials = self._trials_cached(db, sweep_id)
            try:
                stop, attrs = should_stop(config, trials, number, self._studies)
            except BaseException:
                self._studies.forget(sweep_id)
                raise
            db.execute(
                "UPDATE trials SET attrs = ? WHERE sweep_id = ? AND number = ?",
                (json.dumps(attrs), sweep_id, number),
            )
            return stop

    def finish_trial(
        self,
        sweep_id: str,
        number: int,
        state: str,
        value: float | None,
        run_dir: str | None = None,
    ) -> None:
        with self._write() as db:
            raw = db.execute("SELECT config FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
            if raw is None:
                raise KeyError(f"no sweep {sweep_id!r} in {self.path}")
            self._settle(db, sweep_id, self._config(sweep_id, raw[0]), number, state, value,
                         run_dir)  # fmt: skip

    def _settle(
        self,
        db: sqlite3.Connection,
        sweep_id: str,
        config: SweepConfig,
        number: int,
        state: str,
        value: float | None,
        run_dir: str | None,
    ) -> None:
        db.execute(
            "UPDATE trials SET state = ?, value = ?, ended = ?, run_dir = COALESCE(?, run_dir)"
            " WHERE sweep_id = ? AND number = ?",
            (state, _real(value), time.time(), run_dir, sweep_id, number),
        )
        metric = config.metric
        reached = metric is not None and value is not None and metric.reached(value)
        if reached and state == "finished":  # W&B: a run reaching the target ends the sweep
            db.execute("UPDATE sweeps SET exhausted = 1 WHERE id = ?", (sweep_id,))
        self._maybe_finished(db, sweep_id)

    def _maybe_finished(self, db: sqlite3.Connection, sweep_id: str) -> None:
        running = db.execute(
            "SELECT COUNT(*) FROM trials WHERE sweep_id = ? AND state = 'running'", (sweep_id,)
        ).fetchone()[0]
        if running:
            return
        db.execute(
            "UPDATE sweeps SET state = 'finished' WHERE id = ? AND state = 'running'"
            " AND exhausted = 1",
            (sweep_id,),
        )

    def _reap(self, db: sqlite3.Connection, sweep_id: str, config: SweepConfig) -> None:
        """Settle the running trials of dead agents from their run folders."""
        rows = db.execute(
            "SELECT number, run_id, agent, run_dir FROM trials WHERE sweep_id = ? AND"
            " state = 'running'",
            (sweep_id,),
        ).fetchall()
        for number, run_id, agent, stored_dir in rows:
            if self._agent_alive(agent):
                continue
            run_dir = stored_dir
            marker = self.root / "sweeps" / sweep_id / f"trial-{number}.json.run"
            if run_dir is None and marker.is_file():  # where the trial's init() put the run
                with contextlib.suppress(OSError):
                    run_dir = marker.read_text().strip() or None
            state, value, found = run_outcome(self.root, run_id, run_dir, config)
            if state != "running":
                self._settle(db, sweep_id, config, number, state, value, found)

    def trials(self, sweep_id: str) -> list[Trial]:
        self.sweep(sweep_id)
        with self._mutex:
            return self._trials(self._db, sweep_id, reports=True)

    def _trials(self, db: sqlite3.Connection, sweep_id: str, *, reports: bool) -> list[Trial]:
        return self._load(db, sweep_id, None, reports)

    def _trials_cached(self, db: sqlite3.Connection, sweep_id: str) -> list[Trial]:
        """Every trial with its reports, for the engine: an ended trial never changes, so it is
        read once per controller; each call reads only the numbers and states of the rest."""
        ended = self._ended.setdefault(sweep_id, {})
        states = db.execute(
            "SELECT number, state FROM trials WHERE sweep_id = ? ORDER BY number", (sweep_id,)
        ).fetchall()
        need = [n for n, state in states if state == "running" or n not in ended]
        fresh = {t.number: t for t in self._load(db, sweep_id, need, True)} if need else {}
        out = []
        for number, _ in states:
            trial = fresh.get(number) or ended[number]
            if trial.state != "running":
                ended[number] = trial
            out.append(trial)
        return out

    def _load(
        self, db: sqlite3.Connection, sweep_id: str, numbers: list[int] | None, reports: bool
    ) -> list[Trial]:
        columns = (
            "SELECT number, run_id, params, state, value, latent, attrs, agent, run_dir,"
            " started, ended FROM trials WHERE sweep_id = ?"
        )
        chunks: list[list[int] | None] = [None]
        if numbers is not None:
            chunks = [numbers[i : i + 500] for i in range(0, len(numbers), 500)]
        rows: list[Any] = []
        found: list[Any] = []
        for chunk in chunks:
            where = "" if chunk is None else f" AND number IN ({','.join('?' * len(chunk))})"
            rows += db.execute(f"{columns}{where}", (sweep_id, *(chunk or ()))).fetchall()
            if reports:
                found += db.execute(
                    f"SELECT number, step, value FROM reports WHERE sweep_id = ?{where}",
                    (sweep_id, *(chunk or ())),
                ).fetchall()
        rows.sort(key=lambda r: r[0])
        out = [
            Trial(sweep_id, r[0], r[1], json.loads(r[2]), r[3], r[4], json.loads(r[5]), {},
                  json.loads(r[6]), r[7], r[8], r[9], r[10])
            for r in rows
        ]  # fmt: skip
        by_number = {t.number: t for t in out}
        for number, step, value in found:
            if number in by_number:
                by_number[number].reports[step] = value
        return out


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


def _real(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
