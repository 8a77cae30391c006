"""``sweep()``, ``agent()`` and ``Api().sweep()``: the public functions over a controller.

The controller is chosen in one place, ``controller_for``: the local one (``<fulmen dir>/
sweeps.db``, the fulmen dir being where ``init()`` writes runs: ``FULMEN_DIR``/``dir``). A server
controller (``FULMEN_BASE_URL``) implements the same ``Controller`` protocol when it comes; until
then a sweep is controlled locally even when runs upload to a server.
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


def controller_for(directory: str | os.PathLike[str] | None = None) -> LocalController:
    return LocalController(fulmen_root(directory))


def sweep_id_of(path: str) -> str:
    """``id``, ``project/id`` or ``entity/project/id`` -> ``id``."""
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError(
            f"sweep id must be 'id', 'project/id' or 'entity/project/id', got {path!r}"
        )
    return path.strip("/").rsplit("/", 1)[-1]


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
        priors = [_prior(controller.root, config, run_id) for run_id in (prior_runs or [])]
        sweep_id = controller.create(raw, project, entity, priors)
    finally:
        controller.close()
    log.info("created sweep %s in %s", sweep_id, controller.path)
    return sweep_id


def _prior(root: Path, config: SweepConfig, run_id: str) -> Trial:
    from fulmen.track._api import Api

    run = Api(dir=str(root)).run(run_id)
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
    return Trial("", 0, run.id, flat, state=state, value=value, latent=latent,
                 run_dir=str(run.dir))  # fmt: skip


def agent(
    sweep_id: str,
    function: Callable[[], Any] | None = None,
    entity: str | None = None,
    project: str | None = None,
    count: int | None = None,
) -> int:
    """Run trials of the sweep one after another (``function``, or the config's program) until
    the sweep is done or ``count`` trials ran; the number run."""
    controller = controller_for()
    try:
        record = controller.sweep(sweep_id_of(sweep_id))
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
        controller.set_state(sweep_id_of(sweep_id), state)
    finally:
        controller.close()


class ApiSweep:
    """A sweep as ``Api().sweep(path)`` reads it: config, state, trials, runs, best run."""

    def __init__(self, root: Path, path: str, controller: Controller | None = None) -> None:
        self._root = Path(root)
        self._controller = controller or LocalController(self._root)
        self.id = sweep_id_of(path)
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
        """The ``ApiRun`` of every trial whose run exists, by trial number."""
        from fulmen.track._api import ApiRun
        from fulmen.track._layout import find_run_dir, log_path

        out = []
        for t in self.trials:
            folder = Path(t.run_dir) if t.run_dir else find_run_dir(self._root, t.run_id)
            if folder is not None and log_path(folder).is_file():
                out.append(ApiRun(folder))
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
