"""``sweep()``, ``agent()`` and ``Api().sweep()``: the public functions over a controller.

The controller is chosen in one place, ``controller_for``: with a server configured (runs log
online: ``FULMEN_BASE_URL`` or ``fulmen login``, and no ``FULMEN_MODE=offline``) the server holds
the sweep (``_remote.ServerController``); otherwise the local file does (``<fulmen dir>/sweeps.db``,
the fulmen dir being where ``init()`` writes runs: ``FULMEN_DIR``/``dir``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fulmen.sweep._agent import Agent
from fulmen.sweep._config import SweepConfig, load, parse
from fulmen.sweep._controller import Controller, SweepRecord, Trial
from fulmen.sweep._local import LocalController, metric_value
from fulmen.sweep._space import to_latent

log = logging.getLogger("fulmen.sweep")


def fulmen_root(directory: str | os.PathLike[str] | None = None) -> Path:
    """The fulmen folder that runs are written to (``<dir>/fulmen``), created if needed."""
    from fulmen.track._settings import resolve

    base = resolve({}).dir if directory is None else Path(directory)
    root = base if base.name == "fulmen" else base / "fulmen"
    root.mkdir(parents=True, exist_ok=True)
    return root


def controller_for(
    directory: str | os.PathLike[str] | None = None, *, agent: bool = False
) -> Controller:
    """The server's controller when runs log to a server, else the local file's. An agent's
    waits out a server's restart (10 minutes); a command's gives up sooner (30 s)."""
    from fulmen.track._settings import resolve

    settings = resolve({})
    root = fulmen_root(directory)
    if settings.base_url and settings.mode == "online":
        from fulmen.sweep._remote import COMMAND_RETRY_S, RETRY_S, ServerController

        return ServerController(
            settings.base_url, settings.api_key, root, entity=settings.entity,
            project=settings.project, retry_s=RETRY_S if agent else COMMAND_RETRY_S,
        )  # fmt: skip
    return LocalController(root)


def sweep(
    sweep: dict[str, Any] | str | os.PathLike[str],
    entity: str | None = None,
    project: str | None = None,
    prior_runs: Iterable[str] | None = None,
) -> str:
    """Create a sweep from a W&B sweep config (a dict, or a YAML file's path); its id."""
    from fulmen.track._settings import check_name, resolve

    raw = load(sweep)
    config = parse(raw)
    settings = resolve({})
    project = project or config.project or settings.project
    entity = entity or config.entity or settings.entity
    check_name("project", project)
    if entity is not None:
        check_name("entity", entity)
    controller = controller_for()
    try:
        priors = [_prior(controller, config, entity, project, run_id)
                  for run_id in (prior_runs or [])]  # fmt: skip
        sweep_id = controller.create(raw, project, entity, priors)
    finally:
        controller.close()
    log.info("created sweep %s in %s", sweep_id, getattr(controller, "path", controller.root))
    return sweep_id


def _prior(
    controller: Controller, config: SweepConfig, entity: str | None, project: str, run_id: str
) -> Trial:
    run = controller.run_of(entity, project, run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r} to use as a prior run (project {project!r})")
    flat: dict[str, Any] = {}
    latent: dict[str, Any] = {}
    for p in config.parameters:
        node: Any = run.config
        for part in p.path:
            node = node.get(part) if isinstance(node, dict) else None
        flat[p.name] = node
        x = to_latent(p, node) if p.searchable and node is not None else None
        if x is not None:
            latent[p.name] = x
    value = metric_value(run.summary, config.metric.name) if config.metric else None
    state = run.state if run.state != "running" else "crashed"
    folder = getattr(run, "dir", None)  # a local run's folder (a server's run has none)
    return Trial("", 0, run.id, flat, state=state, value=value, latent=latent,
                 run_dir=None if folder is None else str(folder))  # fmt: skip


def agent(
    sweep_id: str,
    function: Callable[[], Any] | None = None,
    entity: str | None = None,
    project: str | None = None,
    count: int | None = None,
) -> int:
    """Run trials of the sweep one after another (``function``, or the config's program) until
    the sweep is done or ``count`` trials ran; the number run."""
    controller = controller_for(agent=True)
    try:
        record = controller.sweep(controller.resolve(sweep_id))
        if project is not None and project != record.project:
            raise ValueError(
                f"sweep {record.id} belongs to project {record.project!r}, not {project!r}"
            )
        if entity is not None and record.entity is not None and entity != record.entity:
            raise ValueError(
                f"sweep {record.id} belongs to entity {record.entity!r}, not {entity!r}"
            )
        return Agent(controller, controller.root, record.id, function, count).run()
    finally:
        controller.close()


def set_state(sweep_id: str, state: str) -> None:
    """Pause, resume ("running"), stop or cancel a sweep."""
    controller = controller_for()
    try:
        controller.set_state(controller.resolve(sweep_id), state)
    finally:
        controller.close()


class ApiSweep:
    """A sweep as ``Api().sweep(path)`` reads it: config, state, trials, runs, best run."""

    def __init__(self, controller: Controller, path: str) -> None:
        self._controller = controller
        self.id = controller.resolve(path)
        self._record: SweepRecord = self._controller.sweep(self.id)
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[-2] != self._record.project:
            raise ValueError(
                f"sweep {self.id!r} belongs to project {self._record.project!r}, not {parts[-2]!r}"
            )

    def refresh(self) -> None:
        self._record = self._controller.sweep(self.id)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._record.config)

    @property
    def state(self) -> str:
        return self._controller.sweep(self.id).state

    @property
    def name(self) -> str:
        return self._record.name or self.id

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def entity(self) -> str | None:
        return self._record.entity

    @property
    def path(self) -> str:
        return "/".join(p for p in (self.entity, self.project, self.id) if p)

    @property
    def trials(self) -> list[Trial]:
        """Every trial: number, run id, parameters, state, metric value."""
        return self._controller.trials(self.id)

    @property
    def runs(self) -> list[Any]:
        """The run of every trial that has one, by trial number: an ``ApiRun`` (a local sweep)
        or an ``HttpRun`` (a sweep on a server)."""
        out = []
        for t in self.trials:
            run = self._controller.run_of(self.entity, self.project, t.run_id, t.run_dir)
            if run is not None:
                out.append(run)
        return out

    def best_run(self, order: str | None = None) -> Any:
        """The run with the best metric: ``order`` is ``"name"``/``"+name"`` (lowest first) or
        ``"-name"`` (highest first), optionally ``summary_metrics.name``; default: the sweep's
        metric and goal. None when no run has it."""
        config = parse(self._record.config)
        if order is None:
            if config.metric is None:
                raise ValueError(f"sweep {self.id} has no metric: pass order='-name' or '+name'")
            name, descending = config.metric.name, config.metric.goal == "maximize"
        else:
            if not isinstance(order, str) or not order.lstrip("+-"):
                raise ValueError(f"order must be 'name', '+name' or '-name', got {order!r}")
            descending = order.startswith("-")
            name = order.lstrip("+-").removeprefix("summary_metrics.")
        scored = [(metric_value(r.summary, name), r) for r in self.runs]
        have = [(v, r) for v, r in scored if v is not None]
        if not have:
            return None
        return (max if descending else min)(have, key=lambda vr: vr[0])[1]

    def __repr__(self) -> str:
        return f"<Sweep {self.path} ({self.state})>"


def open_sweep(path: str, root: str | os.PathLike[str] | None = None) -> ApiSweep:
    """``Api().sweep(path)``: on the server when one is configured, else in the fulmen folder
    ``root`` (default: the settings')."""
    from fulmen.track._settings import resolve

    settings = resolve({})
    if settings.base_url and settings.mode == "online":
        return http_sweep(path, settings.base_url, settings.api_key, settings.project)
    if root is None:
        return ApiSweep(LocalController(fulmen_root()), path)
    return ApiSweep(LocalController(root), path)


def http_sweep(path: str, base_url: str, api_key: str | None, project: str | None) -> ApiSweep:
    """``Api(base_url=...).sweep(path)``: the sweep on that server."""
    from fulmen.sweep._remote import COMMAND_RETRY_S, ServerController

    controller = ServerController(
        base_url, api_key, fulmen_root(), project=project, retry_s=COMMAND_RETRY_S
    )
    return ApiSweep(controller, path)
