"""The search: the next configuration of a sweep, and whether hyperband stops a trial.

Pure functions of (config, trials so far): the controller calls them inside its write transaction,
so two agents never see the same "trials so far". grid and random never repeat a configuration
(each trial carries a key, unique per sweep in the store); bayes asks Optuna's TPE sampler, which
sees every earlier trial, running ones included (``constant_liar``, so parallel agents spread out);
hyperband is Optuna's HyperbandPruner on the metric as the run logs it, iteration = the n-th time
the metric was logged. Optuna runs on an in-memory study rebuilt from the stored trials, so the
stored trials are the only state (no second database to keep in step).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fulmen.sweep._config import Param, SweepConfig
from fulmen.sweep._controller import Trial
from fulmen.sweep._space import (
    finite_size,
    from_latent,
    grid_point,
    grid_size,
    key_of,
    optuna_space,
    sample,
)

log = logging.getLogger("fulmen.sweep")
RANDOM_TRIES = 200
ENUMERATE_LIMIT = 1_000_000


@dataclass
class Proposal:
    params: dict[str, Any]  # flat
    latent: dict[str, Any]
    key: str | None  # None: repeats allowed (bayes)


def propose(config: SweepConfig, trials: list[Trial], keys: set[str], seed: int) -> Proposal | None:
    """The next configuration, or None when the space is exhausted (grid, finite random)."""
    number = len(trials)
    if config.method == "grid":
        return _grid(config.parameters, keys)
    if config.method == "random":
        return _random(config.parameters, keys, random.Random(f"{seed}:{number}"))
    return _bayes(config, trials, seed)


def _grid(params: tuple[Param, ...], keys: set[str]) -> Proposal | None:
    for index in range(grid_size(params)):
        key = f"grid:{index}"
        if key not in keys:
            return Proposal(grid_point(params, index), {}, key)
    return None


def _random(params: tuple[Param, ...], keys: set[str], rng: random.Random) -> Proposal | None:
    size = finite_size(params)
    if size is not None and len(keys) >= size:
        return None
    for _ in range(RANDOM_TRIES):
        flat = {p.name: sample(p, rng) for p in params}
        key = key_of(flat)
        if key not in keys:
            return Proposal(flat, {}, key)
    # Nearly every point is taken: pick among the ones left (a finite space only).
    if size is None or size > ENUMERATE_LIMIT:
        return None
    left = [
        flat for flat in (grid_point(params, i) for i in range(size)) if key_of(flat) not in keys
    ]
    if not left:
        return None
    flat = rng.choice(left)
    return Proposal(flat, {}, key_of(flat))


def _bayes(config: SweepConfig, trials: list[Trial], seed: int) -> Proposal:
    optuna = _optuna()
    study = build_study(config, trials, optuna.samplers.TPESampler(seed=seed + len(trials)))
    space = optuna_space(config.parameters)
    trial = study.ask(space)
    latent = dict(trial.params)
    flat = {p.name: from_latent(p, latent.get(p.name)) for p in config.parameters}
    return Proposal(flat, latent, None)


def should_stop(
    config: SweepConfig, trials: list[Trial], number: int
) -> tuple[bool, dict[str, Any]]:
    """Hyperband's verdict on trial ``number`` after its latest report, and the trial's pruner
    state to store (the rungs it completed)."""
    hb = config.early_terminate
    current = next((t for t in trials if t.number == number), None)
    if hb is None or current is None or not current.reports:
        return False, current.attrs if current is not None else {}
    optuna = _optuna()
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=hb.min_iter,
        max_resource=hb.max_iter if hb.max_iter is not None else "auto",
        reduction_factor=hb.eta,
        bootstrap_count=hb.eta if hb.strict else 0,
    )
    study = build_study(config, trials, optuna.samplers.RandomSampler(seed=0), pruner=pruner)
    frozen = study.get_trials(deepcopy=False)[number]
    stop = bool(pruner.prune(study, frozen))
    attrs = dict(study.get_trials(deepcopy=False)[number].system_attrs)
    return stop, attrs


def build_study(config: SweepConfig, trials: list[Trial], sampler: Any, pruner: Any = None) -> Any:
    """An in-memory Optuna study holding ``trials`` in number order (numbers match ours)."""
    optuna = _optuna()
    from optuna.trial import TrialState, create_trial

    metric = config.metric
    direction = "maximize" if metric is not None and metric.goal == "maximize" else "minimize"
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
    space = optuna_space(config.parameters) if config.method == "bayes" else {}
    states = {
        "finished": TrialState.COMPLETE,
        "running": TrialState.RUNNING,
        "stopped": TrialState.PRUNED,
    }
    frozen = []
    for t in sorted(trials, key=lambda t: t.number):
        params = {k: v for k, v in t.latent.items() if k in space}
        if len(params) != len(space):
            params = {}  # a prior run without latent values: its metric still counts below
        state = states.get(t.state, TrialState.FAIL)
        value = t.value if t.value is not None and math.isfinite(t.value) else None
        if state == TrialState.COMPLETE and value is None:
            state = TrialState.FAIL  # ended without the metric: nothing to learn from
        ft = create_trial(
            state=state,
            value=value if state == TrialState.COMPLETE else None,
            params=params,
            distributions={k: space[k] for k in params},
            intermediate_values=dict(t.reports),
            system_attrs=dict(t.attrs),
        )
        if state == TrialState.RUNNING:
            ft.datetime_complete = None
            ft.datetime_start = datetime.now()
        frozen.append(ft)
    study.add_trials(frozen)
    return study


def _optuna() -> Any:
    import optuna

    # Optuna logs every study it creates at INFO; the controller creates one per call.
    if optuna.logging.get_verbosity() < optuna.logging.WARNING:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
