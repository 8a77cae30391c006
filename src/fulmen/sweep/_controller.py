"""The controller: what an agent asks of whoever holds a sweep's state.

``Controller`` is a Protocol so that the local one (``_local.LocalController``: one SQLite file in
the fulmen folder) and the server one (``_remote.ServerController``: the server holds the sweep and
is asked over its HTTP API) are interchangeable: the agent, ``sweep()``, ``agent()`` and
``Api().sweep()`` only ever call these methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# A sweep's states (W&B's): new trials are handed out only while "running".
SWEEP_STATES = ("running", "paused", "finished", "stopped", "canceled")
# A trial's states: the run's own (finished, failed, killed, crashed), "stopped" when hyperband
# (or a canceled sweep) ended it, and "running".
TRIAL_STATES = ("running", "finished", "failed", "killed", "crashed", "stopped")
ENDED_TRIAL_STATES = TRIAL_STATES[1:]


@dataclass
class Trial:
    """One trial: a run of the sweep with its parameters."""

    sweep_id: str
    number: int
    run_id: str
    params: dict[str, Any]  # flat: "a.b" for nested parameters
    state: str = "running"
    value: float | None = None  # the metric at the end (the run's summary)
    latent: dict[str, Any] = field(default_factory=dict)  # the Optuna values (bayes)
    reports: dict[int, float] = field(default_factory=dict)  # iteration -> metric (hyperband)
    attrs: dict[str, Any] = field(default_factory=dict)  # the pruner's per-trial state
    agent: str | None = None
    run_dir: str | None = None
    started: float | None = None
    ended: float | None = None


@dataclass
class Claim:
    """The answer to "next trial": a trial, or "wait" (paused), or "done" with the reason."""

    kind: str  # "trial" | "wait" | "done"
    trial: Trial | None = None
    reason: str = ""


@dataclass
class SweepRecord:
    id: str
    entity: str | None
    project: str
    name: str | None
    config: dict[str, Any]
    state: str
    created: float
    seed: int


def sweep_id_of(path: str) -> str:
    """``id``, ``project/id`` or ``entity/project/id`` -> ``id``."""
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError(
            f"sweep id must be 'id', 'project/id' or 'entity/project/id', got {path!r}"
        )
    return path.strip("/").rsplit("/", 1)[-1]


class Controller(Protocol):
    """The sweep's state and its search, as agents and readers see it."""

    root: Path  # the fulmen folder of this machine: where the agent writes trial files and runs

    def resolve(self, path: str) -> str:
        """The sweep id of ``path`` (``id``, ``project/id`` or ``entity/project/id``)."""

    def close(self) -> None:
        """Let go of what the controller holds (its agents end)."""

    def create(
        self,
        config: dict[str, Any],
        project: str,
        entity: str | None = None,
        prior_runs: list[Trial] | None = None,
    ) -> str:
        """Store a new (already validated) sweep; its id."""

    def sweep(self, sweep_id: str) -> SweepRecord:
        """The sweep; ``KeyError`` naming it when there is none."""

    def set_state(self, sweep_id: str, state: str) -> None:
        """Pause, resume ("running"), stop or cancel."""

    def register_agent(self, sweep_id: str) -> str:
        """A new agent of the sweep; its id. Its trials are its own until it unregisters or dies."""

    def unregister_agent(self, agent_id: str) -> None:
        """The agent ends (its trials must have ended)."""

    def next_trial(self, sweep_id: str, agent_id: str) -> Claim:
        """Claim the next trial for ``agent_id`` (no two agents get the same one)."""

    def report(self, sweep_id: str, number: int, step: int, value: float) -> bool:
        """The metric at iteration ``step`` of a running trial; True: stop it (hyperband)."""

    def finish_trial(
        self,
        sweep_id: str,
        number: int,
        state: str,
        value: float | None,
        run_dir: str | None = None,
    ) -> None:
        """The trial ended in ``state`` with the metric ``value``."""

    def trials(self, sweep_id: str) -> list[Trial]:
        """Every trial of the sweep, by number."""

    def run_of(
        self, entity: str | None, project: str, run_id: str, run_dir: str | None = None
    ) -> Any:
        """A run as the read API shows it (``ApiRun`` here, ``HttpRun`` on a server), or None."""
