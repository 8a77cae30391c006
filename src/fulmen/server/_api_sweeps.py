"""Routes of sweeps: the server as the sweep controller (docs/sweeps.md, "With a server").

The sweep logic is fulmen.sweep's (``_store.SweepStore``, the same as the local controller's),
on the server's store (``Store.sweep_database``: its transactions, the sweep tables of migration
2). What is the server's own:

- **liveness**: an agent is alive while its heartbeats (``POST .../agents/{id}/heartbeat``, or any
  claim it makes) are at most ``ServerConfig.agent_timeout`` seconds old, counted from this
  server's start at the earliest (agents could not beat while it was down). A running trial
  whose agent is dead is settled at the next claim, or when the sweep is read: from its run's
  state in the store (the run's own exit if it ended; crashed if it did not, or never started).
- **the sweep page's data**: ``GET .../sweeps/{id}`` answers the config, state and progress,
  every trial (parameters, metric, state, run id), its agents, the best so far, parameter importance
  (Optuna's evaluator, named) and Spearman correlations (``fulmen.sweep._analysis``), cached
  until a trial ends.

Reads need a key that may read the entity, writes one that may write it (``_auth``: every route
under ``/entities/{entity}/``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from fulmen.server import _names
from fulmen.server._deps import ProjectDep, ResDep
from fulmen.server.store import NotFound, Store, StoreFull
from fulmen.sweep import _analysis
from fulmen.sweep._config import SweepConfig, SweepConfigError, parse
from fulmen.sweep._controller import ENDED_TRIAL_STATES, SweepRecord, Trial
from fulmen.sweep._local import metric_value
from fulmen.sweep._space import finite_size, grid_size
from fulmen.sweep._store import AgentSeen, Outcome, SweepStore

router = APIRouter(tags=["sweeps"])
SWEEPS = "/entities/{entity}/projects/{project}/sweeps"
SWEEP = SWEEPS + "/{sweep_id}"
AGENT = SWEEP + "/agents/{agent_id}"
TRIAL = SWEEP + "/trials/{number}"
HEARTBEATS_PER_TIMEOUT = 4


class ServerSweeps:
    """The sweeps this server controls: ``book`` (the sweep logic on the store) with the
    server's liveness rule and run outcomes (see the module docstring)."""

    def __init__(
        self, store: Store, timeout: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.clock = clock
        self.started = clock()
        self.book = SweepStore(
            store.sweep_database(), alive=self._alive, outcome=self._outcome,
            where="this server", clock=clock,
        )  # fmt: skip
        self._analysis: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._analysis_lock = threading.Lock()

    @property
    def heartbeat_s(self) -> float:
        return self.timeout / HEARTBEATS_PER_TIMEOUT

    def _alive(self, agent: AgentSeen) -> bool:
        if agent.id is None or agent.ended is not None:
            return False
        return self.clock() - max(agent.seen or 0.0, self.started) <= self.timeout

    def _outcome(self, record: SweepRecord, trial: Trial) -> Outcome:
        try:
            run = self.store.run(record.entity or "", record.project, trial.run_id)
        except NotFound:
            return "crashed", None, None  # the trial died before its run reached the server
        state = str(run.get("state") or "running")
        if state not in ENDED_TRIAL_STATES:
            state = "crashed"  # its agent is gone and the run never ended
        config = self.book.config(record.id, record.config)
        value = None
        if config.metric is not None:
            value = metric_value(run.get("summary") or {}, config.metric.name)
        return state, value, None

    def analysis(self, record: SweepRecord, trials: list[Trial]) -> dict[str, Any]:
        """Importance and correlation, computed again only when a trial ended since."""
        signature = tuple((t.number, t.state) for t in trials if t.state != "running")
        with self._analysis_lock:
            cached = self._analysis.get(record.id)
        if cached is not None and cached[0] == signature:
            return cached[1]
        config = self.book.config(record.id, record.config)
        result = {
            "importance": _analysis.importance(config, trials),
            "correlation": _analysis.correlation(config, trials),
        }
        with self._analysis_lock:
            self._analysis[record.id] = (signature, result)
        return result


# --- bodies ------------------------------------------------------------------------------------


class PriorRun(BaseModel):
    """A run that joins the sweep as an ended trial (``sweep(prior_runs=...)``)."""

    run_id: str
    params: dict[str, Any] = {}
    state: Literal["finished", "failed", "killed", "crashed", "stopped"] = "finished"
    value: float | None = None
    latent: dict[str, Any] = {}


class CreateBody(BaseModel):
    """A new sweep: its config (W&B's schema, checked as ``fulmen.sweep.parse`` checks it)."""

    config: dict[str, Any]
    prior_runs: list[PriorRun] = Field(default=[], max_length=100_000)
    seed: int | None = Field(default=None, ge=0, lt=2**32)


class StateBody(BaseModel):
    state: Literal["running", "paused", "finished", "stopped", "canceled"]


class AgentBody(BaseModel):
    pid: int | None = Field(default=None, ge=0)
    host: str | None = Field(default=None, max_length=255)


class NextBody(BaseModel):
    agent: str = Field(max_length=64)
    # the claim's id: the same id again (a retry after a lost answer) gets the same trial
    request: str | None = Field(default=None, min_length=1, max_length=64)


class ReportBody(BaseModel):
    step: int = Field(ge=0, le=2**31 - 1)
    value: float


class FinishBody(BaseModel):
    state: Literal["finished", "failed", "killed", "crashed", "stopped"]
    value: float | None = None


Number = Annotated[int, Path(ge=0, le=2**31 - 1)]


# --- answers -----------------------------------------------------------------------------------


def trial_json(t: Trial) -> dict[str, Any]:
    """A trial as the answers write it (``fulmen.sweep._remote.trial_from_json`` reads it)."""
    return {
        "number": t.number, "run_id": t.run_id, "params": t.params, "state": t.state,
        "value": t.value, "latent": t.latent, "reports": {str(k): v for k, v in t.reports.items()},
        "agent": t.agent, "started": t.started, "ended": t.ended,
    }  # fmt: skip


def _size(config: SweepConfig) -> int | None:
    """How many trials the search can make at most (grid, finite random), else None."""
    if config.method == "grid":
        return grid_size(config.parameters)
    if config.method == "random":
        return finite_size(config.parameters)
    return None


def _record_json(
    sweeps: ServerSweeps, record: SweepRecord, counts: dict[str, int]
) -> dict[str, Any]:
    config = sweeps.book.config(record.id, record.config)
    metric = config.metric
    return {
        "id": record.id,
        "entity": record.entity,
        "project": record.project,
        "path": f"{record.entity}/{record.project}/{record.id}",
        "name": record.name,
        "method": config.method,
        "metric": None if metric is None else {"name": metric.name, "goal": metric.goal},
        "state": record.state,
        "created": record.created,
        "seed": record.seed,
        "config": record.config,
        "progress": {
            "trials": sum(counts.values()),
            "states": counts,
            "run_cap": config.run_cap,
            "size": _size(config),
        },
    }


@contextlib.contextmanager
def _answers(value_status: int = 422) -> Iterator[None]:
    """The sweep logic's errors as HTTP answers: unknown sweep, agent or trial 404, a bad value
    ``value_status`` (422; 409 where the request contradicts the sweep's state), a full disk 503."""
    try:
        yield
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0]) if exc.args else "not found") from None
    except SweepConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    except StoreFull as exc:
        raise HTTPException(503, str(exc), headers={"retry-after": "60"}) from None
    except ValueError as exc:
        raise HTTPException(value_status, str(exc)) from None


def _sweep(res: ResDep, names: tuple[str, str], sweep_id: str) -> SweepRecord:
    """The sweep ``sweep_id`` of the path's entity and project, else 404."""
    _names.run_id(sweep_id, "sweep id")
    with _answers():
        record = res.sweeps.book.sweep(sweep_id)
    if (record.entity, record.project) != names:
        raise HTTPException(404, f"no sweep {sweep_id!r} in {names[0]}/{names[1]}")
    return record


def _agent(res: ResDep, sweep_id: str, agent_id: str) -> AgentSeen:
    _names.run_id(agent_id, "agent id")
    with _answers():
        owner, agent = res.sweeps.book.agent(agent_id)
    if owner != sweep_id:
        raise HTTPException(404, f"no agent {agent_id!r} of sweep {sweep_id!r}")
    return agent


# --- routes ------------------------------------------------------------------------------------


@router.post(SWEEPS, summary="Create a sweep from a W&B sweep config")
def create_sweep(res: ResDep, names: ProjectDep, body: CreateBody) -> dict[str, Any]:
    entity, project = names
    with _answers():
        config = parse(body.config)
        priors = [
            Trial("", 0, _names.run_id(p.run_id), p.params, state=p.state, value=p.value,
                  latent=_latent(config, p.latent))
            for p in body.prior_runs
        ]  # fmt: skip
        sweep_id = res.sweeps.book.create(body.config, project, entity, priors, body.seed)
    return {"id": sweep_id, "path": f"{entity}/{project}/{sweep_id}"}


def _latent(config: SweepConfig, latent: dict[str, Any]) -> dict[str, Any]:
    """A prior run's Optuna values, only those the search can use (a client's, so checked):
    every searchable parameter's, inside its distribution, or none."""
    from fulmen.sweep._space import optuna_space

    if config.method != "bayes":
        return {}
    space = optuna_space(config.parameters)
    try:
        ok = set(latent) == set(space) and all(
            d._contains(d.to_internal_repr(latent[name])) for name, d in space.items()
        )
    except (TypeError, ValueError):
        ok = False
    return dict(latent) if ok else {}


@router.get(SWEEPS, summary="Sweeps of a project, with their progress")
def list_sweeps(res: ResDep, names: ProjectDep) -> dict[str, Any]:
    sweeps = res.sweeps
    records = sweeps.book.sweeps(*names)
    counts = sweeps.book.counts([r.id for r in records])
    return {"sweeps": [_record_json(sweeps, r, counts[r.id]) for r in records]}


@router.get("/entities/{entity}/sweeps", summary="Sweeps of an entity, every project")
def entity_sweeps(res: ResDep, entity: str) -> dict[str, Any]:
    sweeps = res.sweeps
    records = sweeps.book.sweeps(_names.name("entity", entity))
    counts = sweeps.book.counts([r.id for r in records])
    return {"sweeps": [_record_json(sweeps, r, counts[r.id]) for r in records]}


@router.get(SWEEP, summary="One sweep: config, state, progress, trials, best, importance")
def get_sweep(
    res: ResDep,
    names: ProjectDep,
    sweep_id: str,
    trials: Annotated[bool, Query(description="include the trials and the best so far")] = True,
    analysis: Annotated[bool, Query(description="include importance and correlation")] = True,
) -> dict[str, Any]:
    sweeps = res.sweeps
    _sweep(res, names, sweep_id)
    with _answers():
        sweeps.book.settle_dead(sweep_id)  # a dead agent's trial is settled when looked at
        record = sweeps.book.sweep(sweep_id)
        if not trials:
            return _record_json(sweeps, record, sweeps.book.counts([sweep_id])[sweep_id])
        found = sweeps.book.trials(sweep_id)
    counts: dict[str, int] = {}
    for t in found:
        counts[t.state] = counts.get(t.state, 0) + 1
    out = _record_json(sweeps, record, counts)
    config = sweeps.book.config(record.id, record.config)
    out["trials"] = [trial_json(t) for t in found]
    out["agents"] = sweeps.book.agents(sweep_id)
    best = _analysis.best_so_far(config, found)
    out["best"], out["best_so_far"] = best["best"], best["curve"]
    if analysis:
        out.update(sweeps.analysis(record, found))
    return out


@router.put(SWEEP + "/state", summary="Pause, resume, stop or cancel a sweep")
def set_state(res: ResDep, names: ProjectDep, sweep_id: str, body: StateBody) -> dict[str, Any]:
    _sweep(res, names, sweep_id)
    with _answers(value_status=409):
        res.sweeps.book.set_state(sweep_id, body.state)
    return {"state": body.state}


@router.post(SWEEP + "/agents", summary="Register an agent of a sweep")
def register_agent(
    res: ResDep, names: ProjectDep, sweep_id: str, body: AgentBody
) -> dict[str, Any]:
    _sweep(res, names, sweep_id)
    sweeps = res.sweeps
    with _answers():
        agent_id = sweeps.book.add_agent(sweep_id, None, body.pid, body.host)
    return {"id": agent_id, "heartbeat_s": sweeps.heartbeat_s, "timeout_s": sweeps.timeout}


@router.post(AGENT + "/heartbeat", summary="A sweep agent is alive")
def heartbeat(res: ResDep, names: ProjectDep, sweep_id: str, agent_id: str) -> dict[str, Any]:
    record = _sweep(res, names, sweep_id)
    _agent(res, sweep_id, agent_id)
    with _answers():
        res.sweeps.book.heartbeat(agent_id)
    return {"ok": True, "state": record.state}


@router.delete(AGENT, summary="A sweep agent leaves")
def unregister_agent(
    res: ResDep, names: ProjectDep, sweep_id: str, agent_id: str
) -> dict[str, Any]:
    _sweep(res, names, sweep_id)
    _agent(res, sweep_id, agent_id)
    with _answers():
        res.sweeps.book.end_agent(agent_id)
    return {"ok": True}


@router.post(SWEEP + "/next", summary="Claim the next trial of a sweep for an agent")
def next_trial(res: ResDep, names: ProjectDep, sweep_id: str, body: NextBody) -> dict[str, Any]:
    _sweep(res, names, sweep_id)
    agent = _agent(res, sweep_id, body.agent)
    if agent.ended is not None:
        raise HTTPException(409, f"agent {body.agent!r} has left sweep {sweep_id!r}")
    with _answers():
        claim = res.sweeps.book.next_trial(sweep_id, body.agent, body.request)
    trial = None if claim.trial is None else trial_json(claim.trial)
    return {"kind": claim.kind, "reason": claim.reason, "trial": trial}


@router.post(TRIAL + "/report", summary="The metric of a running trial; answers whether to stop")
def report(
    res: ResDep, names: ProjectDep, sweep_id: str, number: Number, body: ReportBody
) -> dict[str, Any]:
    _sweep(res, names, sweep_id)
    with _answers():
        stop = res.sweeps.book.report(sweep_id, number, body.step, body.value)
    return {"stop": stop}


@router.post(TRIAL + "/finish", summary="A trial ended: its state and metric")
def finish(
    res: ResDep, names: ProjectDep, sweep_id: str, number: Number, body: FinishBody
) -> dict[str, Any]:
    _sweep(res, names, sweep_id)
    with _answers():
        res.sweeps.book.finish_trial(sweep_id, number, body.state, body.value)
    return {"ok": True}
