"""The controller's logic on a ``_sql.Database``: one implementation for every place a sweep's
state lives, the local ``sweeps.db`` (``_local.LocalController``) and the server's store
(``fulmen.server._api_sweeps``).

Every change is one write transaction that starts by reading (and, where the engine needs it,
locking) the sweep's row, so two agents that ask for a trial at the same moment are served one
after the other, each seeing the trials the other claimed; the ``(sweep_id, key)`` unique index
makes a repeated configuration impossible even if the search proposed one. A claim may carry a
``request`` id: the same request again (a client retrying after a lost answer) gets the same
trial, not a second one.

Two things differ between the holders and are given to ``SweepStore``:

- ``alive(agent)``: whether the agent of a running trial still lives (local: its ``flock`` is
  held; server: its heartbeat is recent);
- ``outcome(sweep, trial)``: what became of a dead agent's trial, from its run (local: the run
  folder; server: the run in the server's store): (state, metric value, run folder).

A running trial whose agent is dead is settled from its run by the next claim (and by
``settle_dead``): marked, never lost, never left running.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fulmen.sweep import _sql as q
from fulmen.sweep._config import SweepConfig, parse
from fulmen.sweep._controller import (
    ENDED_TRIAL_STATES,
    SWEEP_STATES,
    Claim,
    SweepRecord,
    Trial,
)
from fulmen.sweep._engine import Proposal, StudyCache, propose, should_stop, space_exhausted

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_id(n: int = 8) -> str:
    return "".join(_ALPHABET[b % 36] for b in os.urandom(n))


@dataclass(frozen=True)
class AgentSeen:
    """What the store knows of a trial's agent: its id, last heartbeat and end (None: none)."""

    id: str | None
    seen: float | None
    ended: float | None


Outcome = tuple[str, float | None, str | None]


class SweepStore:
    """Sweeps on ``db`` (see the module docstring); ``where`` names it in errors."""

    def __init__(
        self,
        db: q.Database,
        *,
        alive: Callable[[AgentSeen], bool],
        outcome: Callable[[SweepRecord, Trial], Outcome],
        where: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.clock = clock  # every time stored (claims, heartbeats, ends): seconds since 1970
        self.alive = alive
        self.outcome = outcome
        self.where = where
        self._configs: dict[str, SweepConfig] = {}
        self._studies = StudyCache()  # Optuna's view of each sweep, kept in step with the store
        self._ended: dict[str, dict[int, Trial]] = {}  # sweep -> its ended trials, read once

    def _missing(self, sweep_id: str) -> KeyError:
        return KeyError(f"no sweep {sweep_id!r} in {self.where}")

    def _row(self, tx: q.Tx, sweep_id: str, *, lock: bool = False) -> q.Row:
        row = q.sweep_row(tx, sweep_id, self.db.for_update if lock else "")
        if row is None:
            raise self._missing(sweep_id)
        return row

    def config(self, sweep_id: str, raw: str | dict[str, Any]) -> SweepConfig:
        """The parsed config of a sweep (parsed once per process)."""
        config = self._configs.get(sweep_id)
        if config is None:
            config = parse(json.loads(raw) if isinstance(raw, str) else raw)
            self._configs[sweep_id] = config
        return config

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
        text = json.dumps(config)
        with self.db.write() as tx:
            sweep_id = new_id()
            while q.sweep_row(tx, sweep_id) is not None:
                sweep_id = new_id()
            q.insert_sweep(tx, (sweep_id, entity, project, parsed.name, text, "running",
                                self.clock(), seed, 0))  # fmt: skip
            for number, prior in enumerate(prior_runs or []):
                q.insert_trial(tx, (
                    sweep_id, number, prior.run_id, json.dumps(prior.params),
                    json.dumps(prior.latent), None, None, prior.state, _real(prior.value), None,
                    prior.run_dir, prior.started, prior.ended,
                ))  # fmt: skip
        return sweep_id

    def sweep(self, sweep_id: str) -> SweepRecord:
        with self.db.read() as tx:
            return _record(self._row(tx, sweep_id))

    def sweeps(self, entity: str | None = None, project: str | None = None) -> list[SweepRecord]:
        """Every sweep (of ``entity`` and ``project`` when given), oldest first."""
        with self.db.read() as tx:
            return [_record(r) for r in q.sweep_rows(tx, entity, project)]

    def counts(self, sweep_ids: list[str]) -> dict[str, dict[str, int]]:
        """sweep id -> trial state -> how many."""
        out: dict[str, dict[str, int]] = {i: {} for i in sweep_ids}
        with self.db.read() as tx:
            for sweep_id, state, n in q.state_counts(tx, sweep_ids):
                out[str(sweep_id)][str(state)] = int(n)
        return out

    def set_state(self, sweep_id: str, state: str) -> None:
        if state not in SWEEP_STATES:
            raise ValueError(f"sweep state must be one of {', '.join(SWEEP_STATES)}, got {state!r}")
        with self.db.write() as tx:
            current = str(self._row(tx, sweep_id, lock=True)[5])
            if current in ("finished", "canceled") and state != current:
                raise ValueError(f"sweep {sweep_id} is {current}; it cannot become {state}")
            if state == "running" and current not in ("paused", "stopped", "running"):
                raise ValueError(f"sweep {sweep_id} is {current}; only a paused sweep resumes")
            q.set_sweep_state(tx, sweep_id, state)

    # --- agents ---------------------------------------------------------------------------------

    def add_agent(
        self,
        sweep_id: str,
        agent_id: str | None = None,
        pid: int | None = None,
        host: str | None = None,
    ) -> str:
        """A new agent of the sweep; its id."""
        agent_id = agent_id or new_id(12)
        with self.db.write() as tx:
            self._row(tx, sweep_id)
            q.insert_agent(tx, agent_id, sweep_id, pid, host, self.clock())
        return agent_id

    def agent(self, agent_id: str) -> tuple[str, AgentSeen]:
        """(the sweep, what is known of the agent); ``KeyError`` when there is no such agent."""
        with self.db.read() as tx:
            row = q.agent_row(tx, agent_id)
        if row is None:
            raise KeyError(f"no sweep agent {agent_id!r} in {self.where}")
        return str(row[1]), AgentSeen(str(row[0]), row[5], row[6])

    def agents(self, sweep_id: str) -> list[dict[str, Any]]:
        """Every agent of the sweep: id, pid, host, started, seen, ended and whether alive."""
        with self.db.read() as tx:
            rows = q.agent_rows(tx, sweep_id)
        return [
            {"id": r[0], "pid": r[2], "host": r[3], "started": r[4], "seen": r[5], "ended": r[6],
             "alive": self.alive(AgentSeen(r[0], r[5], r[6]))}
            for r in rows
        ]  # fmt: skip

    def heartbeat(self, agent_id: str) -> None:
        """The agent is alive (now)."""
        with self.db.write() as tx:
            if q.agent_row(tx, agent_id) is None:
                raise KeyError(f"no sweep agent {agent_id!r} in {self.where}")
            q.agent_seen(tx, agent_id, self.clock())

    def end_agent(self, agent_id: str) -> None:
        with self.db.write() as tx:
            q.end_agent(tx, agent_id, self.clock())

    # --- trials ---------------------------------------------------------------------------------

    def next_trial(self, sweep_id: str, agent_id: str, request: str | None = None) -> Claim:
        """Claim the next trial for ``agent_id``; ``request``: the claim's id, the same trial
        for the same id (a retried request)."""
        from fulmen.track._layout import new_id as new_run_id

        with self.db.write() as tx:
            row = self._row(tx, sweep_id, lock=True)
            record = _record(row)
            exhausted = bool(row[8])
            if request is not None:
                replayed = q.claimed_by_request(tx, sweep_id, request)
                if replayed is not None:
                    trial = self._load(tx, sweep_id, [replayed], True)[0]
                    return Claim("trial", trial)
            if q.agent_row(tx, agent_id) is not None:
                q.agent_seen(tx, agent_id, self.clock())
            config = self.config(sweep_id, row[4])
            self._reap(tx, record, config)
            if record.state == "paused":
                return Claim("wait", reason="the sweep is paused")
            if record.state != "running":
                return Claim("done", reason=f"the sweep is {record.state}")
            number = q.trial_count(tx, sweep_id)
            proposal, reason, keys = self._propose(tx, record, config, number, exhausted)
            if proposal is None:
                q.set_exhausted(tx, sweep_id)
                q.finish_if_done(tx, sweep_id)
                return Claim("done", reason=reason)
            trial = Trial(
                sweep_id, number, new_run_id(), proposal.params, latent=proposal.latent,
                agent=agent_id, started=self.clock(),
            )  # fmt: skip
            try:
                q.insert_trial(tx, (
                    sweep_id, number, trial.run_id, json.dumps(trial.params),
                    json.dumps(trial.latent), proposal.key, request, "running", None, agent_id,
                    None, trial.started, None,
                ))  # fmt: skip
            except BaseException:
                self._studies.forget(sweep_id)  # it was told of a trial that is not stored
                raise
            taken = keys if proposal.key is None else keys | {proposal.key}
            if (config.run_cap is not None and number + 1 >= config.run_cap) or space_exhausted(
                config, taken
            ):
                q.set_exhausted(tx, sweep_id)
            return Claim("trial", trial)

    def _propose(
        self, tx: q.Tx, record: SweepRecord, config: SweepConfig, number: int, exhausted: bool
    ) -> tuple[Proposal | None, str, set[str]]:
        """Trial ``number``'s configuration, or None and why there is none; and the keys of the
        configurations tried (grid and random)."""
        if config.run_cap is not None and number >= config.run_cap:
            return None, f"run_cap {config.run_cap} reached", set()
        if exhausted:
            return None, "the sweep has no trials left", set()
        # only bayes reads the trials so far (grid and random need their keys alone)
        trials = self._trials_cached(tx, record.id) if config.method == "bayes" else None
        keys = q.trial_keys(tx, record.id)
        try:
            proposal = propose(config, trials, keys, record.seed, number, self._studies, record.id)
        except BaseException:
            self._studies.forget(record.id)
            raise
        if proposal is None:
            return None, "every configuration has been tried", keys
        return proposal, "", keys

    def report(self, sweep_id: str, number: int, step: int, value: float) -> bool:
        """The metric at iteration ``step`` of trial ``number``; True: hyperband stops it."""
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise ValueError(f"value must be a finite number, got {value!r}")
        with self.db.write() as tx:
            row = self._row(tx, sweep_id, lock=True)
            if q.trial_state(tx, sweep_id, number) is None:
                raise KeyError(f"sweep {sweep_id} has no trial {number}")
            config = self.config(sweep_id, row[4])
            q.upsert_report(tx, sweep_id, number, step, float(value))
            if config.early_terminate is None:
                return False
            trials = self._trials_cached(tx, sweep_id)
            try:
                stop, attrs = should_stop(config, trials, number, self._studies)
            except BaseException:
                self._studies.forget(sweep_id)
                raise
            q.set_trial_attrs(tx, sweep_id, number, json.dumps(attrs))
            return stop

    def finish_trial(
        self,
        sweep_id: str,
        number: int,
        state: str,
        value: float | None,
        run_dir: str | None = None,
    ) -> None:
        """Trial ``number`` ended in ``state`` with the metric ``value``."""
        if state not in ENDED_TRIAL_STATES:
            raise ValueError(
                f"a trial ends in one of {', '.join(ENDED_TRIAL_STATES)}, got {state!r}"
            )
        with self.db.write() as tx:
            row = self._row(tx, sweep_id, lock=True)
            if q.trial_state(tx, sweep_id, number) is None:
                raise KeyError(f"sweep {sweep_id} has no trial {number}")
            self._settle(tx, sweep_id, self.config(sweep_id, row[4]), number, state, value,
                         run_dir)  # fmt: skip

    def _settle(
        self,
        tx: q.Tx,
        sweep_id: str,
        config: SweepConfig,
        number: int,
        state: str,
        value: float | None,
        run_dir: str | None,
    ) -> None:
        q.settle_trial(tx, sweep_id, number, state, _real(value), self.clock(), run_dir)
        metric = config.metric
        reached = metric is not None and value is not None and metric.reached(value)
        if reached and state == "finished":  # W&B: a run reaching the target ends the sweep
            q.set_exhausted(tx, sweep_id)
        q.finish_if_done(tx, sweep_id)

    def settle_dead(self, sweep_id: str) -> None:
        """Settle the running trials of dead agents now (a reader's look at the sweep)."""
        with self.db.read() as tx:
            rows = q.running_trials(tx, sweep_id)
        if not any(not self.alive(AgentSeen(r[2], r[4], r[5])) for r in rows):
            return
        with self.db.write() as tx:
            row = self._row(tx, sweep_id, lock=True)
            self._reap(tx, _record(row), self.config(sweep_id, row[4]))

    def _reap(self, tx: q.Tx, record: SweepRecord, config: SweepConfig) -> None:
        """Settle the running trials of dead agents from their runs."""
        for number, run_id, agent, run_dir, seen, ended in q.running_trials(tx, record.id):
            if self.alive(AgentSeen(agent, seen, ended)):
                continue
            trial = Trial(record.id, number, run_id, {}, agent=agent, run_dir=run_dir)
            state, value, found = self.outcome(record, trial)
            if state != "running":
                self._settle(tx, record.id, config, number, state, value, found)

    def trials(self, sweep_id: str) -> list[Trial]:
        """Every trial of the sweep with its reports, by number."""
        with self.db.read() as tx:
            self._row(tx, sweep_id)
            return self._load(tx, sweep_id, None, True)

    def _trials_cached(self, tx: q.Tx, sweep_id: str) -> list[Trial]:
        """Every trial with its reports, for the engine: an ended trial never changes, so it is
        read once per process; each call reads only the numbers and states of the rest."""
        ended = self._ended.setdefault(sweep_id, {})
        states = q.trial_states(tx, sweep_id)
        need = [n for n, state in states if state == "running" or n not in ended]
        fresh = {t.number: t for t in self._load(tx, sweep_id, need, True)} if need else {}
        out = []
        for number, _ in states:
            trial = fresh.get(number) or ended[number]
            if trial.state != "running":
                ended[number] = trial
            out.append(trial)
        return out

    def _load(
        self, tx: q.Tx, sweep_id: str, numbers: list[int] | None, reports: bool
    ) -> list[Trial]:
        rows, found = q.trial_rows(tx, sweep_id, numbers, reports)
        rows.sort(key=lambda r: r[0])
        out = [
            Trial(sweep_id, r[0], r[1], json.loads(r[2]), r[3], r[4], json.loads(r[5]), {},
                  json.loads(r[6]), r[7], r[8], r[9], r[10])
            for r in rows
        ]  # fmt: skip
        by_number = {t.number: t for t in out}
        for number, step, value in found:
            if number in by_number:
                by_number[number].reports[int(step)] = float(value)
        return out


def _record(row: q.Row) -> SweepRecord:
    return SweepRecord(
        str(row[0]), row[1], str(row[2]), row[3], json.loads(row[4]), str(row[5]),
        float(row[6]), int(row[7]),
    )  # fmt: skip


def _real(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
