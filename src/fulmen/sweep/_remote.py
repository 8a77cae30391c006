"""The server controller: the ``Controller`` protocol over a fulmen server's HTTP API (docs/
sweeps.md, "With a server"). The server holds the sweep (in its store, with the same logic as the
local file: ``_store.SweepStore``); agents on any number of machines ask it for the next trial,
report the metric and are told whether hyperband stops the trial.

What the client does to make that reliable:

- **Retries.** Every call is retried while the server does not answer or answers "later" (a
  restart, an outage: 5xx, 408, 429, no connection), for up to ``retry_s`` seconds (an agent's:
  ``RETRY_S``, 10 minutes; a command's: ``COMMAND_RETRY_S``), with backoff; the agent goes on
  where it was. A claim carries a request id, so a claim whose answer was lost
  gets the same trial when it is sent again (never a second one); reports and finishes are
  idempotent. Creating a sweep is retried only when the server surely did nothing (connection
  refused, 503).
- **Heartbeats.** A registered agent has a thread that tells the server it lives, every
  ``heartbeat_s`` seconds (the server says how often: a fraction of its agent timeout). An agent
  that stops (``kill -9``, a lost machine) stops beating; past the timeout the server settles its
  running trial from the run's state in its store.
- **Sweep state.** An agent reads the sweep's state (a canceled sweep stops the trial) at most
  once a second (``STATE_S``); a reader without agents always asks.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fulmen.sweep._config import SweepConfigError
from fulmen.sweep._controller import Claim, SweepRecord, Trial, sweep_id_of
from fulmen.track._upload import RETRYABLE, Client, ServerError

log = logging.getLogger("fulmen.sweep")
RETRY_S = 600.0  # how long an agent's call keeps trying an unreachable server
COMMAND_RETRY_S = 30.0  # the same for a command's (create a sweep, change its state, read it)
BACKOFF_S = (0.2, 5.0)  # first and longest wait between tries
STATE_S = 1.0  # an agent's view of the sweep's state is at most this old


class ServerController:
    """Sweeps held by the server at ``base_url`` (see the module docstring); ``root``: this
    machine's fulmen folder (trial files and the trials' runs); ``entity`` and ``project``: the
    defaults for a sweep path that does not name them (the key's entity, the settings' project)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        root: str | os.PathLike[str] = "fulmen",
        *,
        entity: str | None = None,
        project: str | None = None,
        retry_s: float = RETRY_S,
    ) -> None:
        self.client = Client(base_url, api_key)
        self.base_url = base_url.rstrip("/")
        self.path = self.base_url  # where the sweeps are, as messages name it
        self.root = Path(root)
        self.retry_s = retry_s
        self._entity = entity
        self._project = project or "uncategorized"
        self._where: dict[str, tuple[str, str]] = {}  # sweep id -> (entity, project)
        self._agents: dict[str, tuple[str, threading.Event, threading.Thread]] = {}
        self._states: dict[str, tuple[float, SweepRecord]] = {}

    # --- HTTP -----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        query: dict[str, Any] | None = None,
        idempotent: bool = True,
    ) -> Any:
        """One request, retried as the module docstring says; errors as Python errors: 404 a
        ``KeyError``, 400/409/422 a ``ValueError``, 401/403 a ``PermissionError``, no server a
        ``ConnectionError``."""
        deadline = time.monotonic() + self.retry_s
        wait, warned = BACKOFF_S[0], False
        while True:
            try:
                return self.client.json(method, path, payload, query=query)
            except ServerError as exc:
                if exc.code not in RETRYABLE or (not idempotent and exc.code != 503):
                    raise _error(exc) from None
                why: str = str(exc)
            except (OSError, http.client.HTTPException) as exc:
                if not idempotent and not isinstance(_reason(exc), ConnectionRefusedError):
                    raise ConnectionError(f"the fulmen server at {self.base_url}: {exc}") from exc
                why = str(exc)
            if time.monotonic() + wait > deadline:
                raise ConnectionError(
                    f"the fulmen server at {self.base_url} did not answer {method} {path} for "
                    f"{self.retry_s:g} s: {why}"
                )
            if not warned:
                log.warning("sweep: the server at %s does not answer (%s); retrying for up to"
                            " %g s", self.base_url, why, self.retry_s)  # fmt: skip
                warned = True
            time.sleep(wait)
            wait = min(wait * 2, BACKOFF_S[1])

    @property
    def entity(self) -> str:
        """The default entity: the settings', else the one the server says the key has."""
        if self._entity is None:
            self._entity = str(self._call("GET", "/viewer")["entity"])
        return self._entity

    def resolve(self, path: str) -> str:
        sweep_id = sweep_id_of(path)
        parts = path.strip("/").split("/")
        if len(parts) >= 3:
            self._where[sweep_id] = (parts[-3], parts[-2])
        elif len(parts) == 2:
            self._where[sweep_id] = (self.entity, parts[0])
        elif sweep_id not in self._where:
            listed = self._call("GET", f"/entities/{quote(self.entity, safe='')}/sweeps")
            found = [s for s in listed["sweeps"] if s["id"] == sweep_id]
            if not found:
                raise KeyError(
                    f"no sweep {sweep_id!r} of entity {self.entity!r} on the server at "
                    f"{self.base_url}"
                )
            self._where[sweep_id] = (self.entity, str(found[0]["project"]))
        return sweep_id

    def _base(self, sweep_id: str) -> str:
        if sweep_id not in self._where:
            self.resolve(sweep_id)
        entity, project = self._where[sweep_id]
        return f"/entities/{quote(entity, safe='')}/projects/{quote(project, safe='')}" + (
            f"/sweeps/{quote(sweep_id, safe='')}"
        )

    def close(self) -> None:
        for agent_id in list(self._agents):
            self.unregister_agent(agent_id)

    # --- sweeps ---------------------------------------------------------------------------------

    def create(
        self,
        config: dict[str, Any],
        project: str,
        entity: str | None = None,
        prior_runs: list[Trial] | None = None,
        seed: int | None = None,
    ) -> str:
        entity = entity or self.entity
        body = {
            "config": config,
            "prior_runs": [
                {"run_id": t.run_id, "params": t.params, "state": t.state, "value": t.value,
                 "latent": t.latent}
                for t in prior_runs or []
            ],
            "seed": seed,
        }  # fmt: skip
        path = f"/entities/{quote(entity, safe='')}/projects/{quote(project, safe='')}/sweeps"
        try:
            answer = self._call("POST", path, body, idempotent=False)
        except ValueError as exc:
            raise SweepConfigError(str(exc)) from None
        sweep_id = str(answer["id"])
        self._where[sweep_id] = (entity, project)
        return sweep_id

    def sweep(self, sweep_id: str) -> SweepRecord:
        cached = self._states.get(sweep_id)
        if cached is not None and time.monotonic() - cached[0] < STATE_S:
            return cached[1]
        data = self._call("GET", self._base(sweep_id), query={"trials": "false"})
        record = SweepRecord(
            str(data["id"]), data.get("entity"), str(data["project"]), data.get("name"),
            dict(data["config"]), str(data["state"]), float(data["created"]), int(data["seed"]),
        )  # fmt: skip
        if any(s == sweep_id for s, _, _ in self._agents.values()):
            self._states[sweep_id] = (time.monotonic(), record)
        return record

    def set_state(self, sweep_id: str, state: str) -> None:
        self._call("PUT", self._base(sweep_id) + "/state", {"state": state})
        self._states.pop(sweep_id, None)

    # --- agents ---------------------------------------------------------------------------------

    def register_agent(self, sweep_id: str) -> str:
        answer = self._call(
            "POST", self._base(sweep_id) + "/agents",
            {"pid": os.getpid(), "host": socket.gethostname()},
        )  # fmt: skip
        agent_id = str(answer["id"])
        stop = threading.Event()
        thread = threading.Thread(
            target=self._beat, args=(sweep_id, agent_id, float(answer["heartbeat_s"]), stop),
            name=f"fulmen-sweep-heartbeat-{agent_id}", daemon=True,
        )  # fmt: skip
        self._agents[agent_id] = (sweep_id, stop, thread)
        thread.start()
        return agent_id

    def _beat(self, sweep_id: str, agent_id: str, every: float, stop: threading.Event) -> None:
        path = f"{self._base(sweep_id)}/agents/{agent_id}/heartbeat"
        while not stop.wait(every):
            try:
                self.client.json("POST", path, {})
            except (ServerError, OSError, http.client.HTTPException) as exc:
                log.debug("sweep %s: heartbeat of agent %s: %s", sweep_id, agent_id, exc)

    def unregister_agent(self, agent_id: str) -> None:
        entry = self._agents.pop(agent_id, None)
        if entry is None:
            return
        sweep_id, stop, thread = entry
        stop.set()
        thread.join()
        self._call("DELETE", f"{self._base(sweep_id)}/agents/{agent_id}", {})

    # --- trials ---------------------------------------------------------------------------------

    def next_trial(self, sweep_id: str, agent_id: str) -> Claim:
        body = {"agent": agent_id, "request": uuid.uuid4().hex}  # the same on every retry
        answer = self._call("POST", self._base(sweep_id) + "/next", body)
        trial = answer.get("trial")
        return Claim(
            str(answer["kind"]),
            None if trial is None else trial_from_json(sweep_id, trial),
            str(answer.get("reason") or ""),
        )

    def report(self, sweep_id: str, number: int, step: int, value: float) -> bool:
        answer = self._call(
            "POST", f"{self._base(sweep_id)}/trials/{number}/report",
            {"step": step, "value": value},
        )  # fmt: skip
        return bool(answer["stop"])

    def finish_trial(
        self,
        sweep_id: str,
        number: int,
        state: str,
        value: float | None,
        run_dir: str | None = None,
    ) -> None:
        # (run_dir is a folder of this machine: the server knows the run by its id)
        self._call(
            "POST", f"{self._base(sweep_id)}/trials/{number}/finish",
            {"state": state, "value": value},
        )  # fmt: skip

    def trials(self, sweep_id: str) -> list[Trial]:
        data = self._call("GET", self._base(sweep_id), query={"analysis": "false"})
        return [trial_from_json(sweep_id, t) for t in data["trials"]]

    def run_of(
        self, entity: str | None, project: str, run_id: str, run_dir: str | None = None
    ) -> Any:
        """The run on the server (``HttpRun``), or None when the server has none."""
        from fulmen.track._http import HttpApi

        api = HttpApi(self.base_url, self.client.api_key, project)
        try:
            return api.run(f"{entity or self.entity}/{project}/{run_id}")
        except ServerError as exc:
            if exc.code == 404:
                return None
            raise


def trial_from_json(sweep_id: str, data: dict[str, Any]) -> Trial:
    """A trial as the server's answers write it (``_api_sweeps.trial_json``)."""
    return Trial(
        sweep_id, int(data["number"]), str(data["run_id"]), dict(data["params"]),
        state=str(data["state"]), value=data.get("value"), latent=dict(data.get("latent") or {}),
        reports={int(k): float(v) for k, v in (data.get("reports") or {}).items()},
        agent=data.get("agent"), started=data.get("started"), ended=data.get("ended"),
    )  # fmt: skip


def _error(exc: ServerError) -> Exception:
    if exc.code == 404:
        return KeyError(exc.detail or str(exc))
    if exc.code in (401, 403):
        return PermissionError(f"the fulmen server refused the key: {exc.detail or exc}")
    if exc.code in (400, 409, 422):
        return ValueError(exc.detail or str(exc))
    return exc


def _reason(exc: BaseException) -> BaseException:
    """The OS error under a ``URLError``."""
    inner = getattr(exc, "reason", None)
    return inner if isinstance(inner, BaseException) else exc
