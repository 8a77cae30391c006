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

import functools
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


def propose(
    config: SweepConfig,
    trials: list[Trial] | None,
    keys: set[str],
    seed: int,
    number: int,
    studies: StudyCache | None = None,
    sweep_id: str = "",
) -> Proposal | None:
    """Trial ``number``'s configuration, or None when the space is exhausted (grid, finite
    random). ``trials`` (every trial so far) is needed by bayes only."""
    if config.method == "grid":
        return _grid(config.parameters, keys)
    if config.method == "random":
        return _random(config.parameters, keys, random.Random(f"{seed}:{number}"))
    return _bayes(config, trials or [], seed, studies or StudyCache(), sweep_id)


def space_exhausted(config: SweepConfig, keys: set[str]) -> bool:
    """Whether ``keys`` (the trials' keys, the one just claimed included) leave ``propose``
    nothing more: every grid point, or every point of a finite random space, tried. The sweep
    then finishes when its last trial ends, not at the next agent's ask (there may be none)."""
    if config.method == "grid":
        return sum(k.startswith("grid:") for k in keys) >= grid_size(config.parameters)
    if config.method == "random":
        size = finite_size(config.parameters)
        return size is not None and len(keys) >= size
    return False


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


def _bayes(
    config: SweepConfig, trials: list[Trial], seed: int, studies: StudyCache, sweep_id: str
) -> Proposal:
    _optuna()
    study = studies.synced(sweep_id, config, trials)
    space = optuna_space(config.parameters)
    # A sampler seeded by the trial number: reproducible, and two agent processes (each with its
    # own cached study) never draw the same startup point.
    study.sampler = _windowed_tpe()(space, seed=(seed + len(trials)) % 2**32, constant_liar=True)
    trial = study.ask(space)
    studies.asked(sweep_id)  # the caller stores it as trial len(trials), running
    latent = dict(trial.params)
    flat = {p.name: from_latent(p, latent.get(p.name)) for p in config.parameters}
    return Proposal(flat, latent, None)


# TPE's window: the best trials (all of TPE's "good" group, which is at most 25) and the most
# recent others. Optuna's TPE already weighs older trials of the "bad" group toward zero, and its
# cost is Python work per trial: 1,000 trials cost ~25 ms a proposal, the window ~5 ms.
WINDOW_BEST = 25
WINDOW_RECENT = 250


@functools.cache
def _windowed_tpe() -> Any:
    """Optuna's TPESampler on a bounded window of the trials, with the sweep's search space
    given (not inferred from every trial). Built on first use: Optuna is imported lazily."""
    from optuna.samplers import TPESampler
    from optuna.trial import TrialState

    class _Window:
        """A study as TPE reads it: its trials limited to ``keep``."""

        def __init__(self, study: Any, keep: list[Any]) -> None:
            self._study = study
            self._keep = keep

        def _get_trials(
            self, deepcopy: bool = False, states: Any = None, use_cache: bool = False
        ) -> list[Any]:
            return [t for t in self._keep if states is None or t.state in states]

        def get_trials(self, deepcopy: bool = False, states: Any = None) -> list[Any]:
            return self._get_trials(deepcopy, states)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._study, name)

    class WindowedTPE(TPESampler):
        def __init__(self, space: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._space = {k: d for k, d in space.items() if not d.single()}

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return dict(self._space)

        def _sample(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            every = study._get_trials(deepcopy=False, use_cache=False)
            if len(every) > WINDOW_BEST + WINDOW_RECENT:
                done = [t for t in every if t.state == TrialState.COMPLETE]
                sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
                best = sorted(done, key=lambda t: sign * t.value)[:WINDOW_BEST]
                chosen = {t.number for t in best}
                recent = [t for t in every if t.number not in chosen][-WINDOW_RECENT:]
                chosen.update(t.number for t in recent)
                study = _Window(study, [t for t in every if t.number in chosen])
            return dict(super()._sample(study, trial, search_space))

    return WindowedTPE


def should_stop(
    config: SweepConfig, trials: list[Trial], number: int, studies: StudyCache | None = None
) -> tuple[bool, dict[str, Any]]:
    """Hyperband's verdict on trial ``number`` after its latest report, and the trial's pruner
    state to store (the rungs it completed)."""
    current = next((t for t in trials if t.number == number), None)
    if config.early_terminate is None or current is None or not current.reports:
        return False, current.attrs if current is not None else {}
    if current.state != "running":
        return False, current.attrs
    study = (studies or StudyCache()).synced(current.sweep_id, config, trials)
    frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
        study._study_id, number))  # fmt: skip
    stop = bool(study.pruner.prune(study, frozen))
    attrs = dict(study._storage.get_trial_system_attrs(frozen._trial_id))
    return stop, attrs


def _pruner(config: SweepConfig) -> Any:
    hb = config.early_terminate
    if hb is None:
        return None
    return _optuna().pruners.HyperbandPruner(
        min_resource=hb.min_iter,
        max_resource=hb.max_iter if hb.max_iter is not None else "auto",
        reduction_factor=hb.eta,
        bootstrap_count=hb.eta if hb.strict else 0,
    )


class StudyCache:
    """In-memory Optuna studies of the sweeps this process controls, kept in step with the
    stored trials: new trials are added and changed running ones updated, instead of rebuilding
    the study (1,000 trials: ~0.7 s) at every call. The stored trials stay the only truth: a study
    that cannot be brought in step (a trial it holds as ended changed) is rebuilt. A trial given
    as the very object seen last time (the store keeps ended trials' objects) is not compared."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, list[tuple[Any, ...]], list[Trial | None]]] = {}

    def forget(self, sweep_id: str) -> None:
        self._entries.pop(sweep_id, None)

    def asked(self, sweep_id: str) -> None:
        """The study's newest trial (an ``ask``) is stored as a running trial with no reports."""
        entry = self._entries[sweep_id]
        entry[1].append(("running", None, (), ()))
        entry[2].append(None)

    def synced(self, sweep_id: str, config: SweepConfig, trials: list[Trial]) -> Any:
        entry = self._entries.get(sweep_id)
        if entry is not None and len(entry[1]) > len(trials):
            entry = None
        if entry is None:
            study = _empty_study(config)
            entry = (study, [], [])
            self._entries[sweep_id] = entry
        study, seen, objects = entry
        try:
            for t in trials[: len(seen)]:
                if objects[t.number] is t:
                    continue
                if _signature(t) != seen[t.number]:
                    _update(study, config, t)
                    seen[t.number] = _signature(t)
                objects[t.number] = t
            if len(trials) > len(seen):
                new = trials[len(seen) :]
                study.add_trials([_frozen(config, t) for t in new])
                seen += [_signature(t) for t in new]
                objects += new
            if len(study._storage.get_all_trials(study._study_id, deepcopy=False)) != len(seen):
                raise _OutOfStep("the study holds trials that are not stored")
        except _OutOfStep:
            self._entries.pop(sweep_id, None)
            study = _empty_study(config)
            study.add_trials([_frozen(config, t) for t in trials])
            self._entries[sweep_id] = (study, [_signature(t) for t in trials], list(trials))
        return study


class _OutOfStep(Exception):
    pass


def _signature(t: Trial) -> tuple[Any, ...]:
    return (t.state, t.value, tuple(sorted(t.reports.items())), tuple(sorted(t.attrs.items())))


def _empty_study(config: SweepConfig) -> Any:
    optuna = _optuna()
    metric = config.metric
    direction = "maximize" if metric is not None and metric.goal == "maximize" else "minimize"
    return optuna.create_study(
        direction=direction, sampler=optuna.samplers.RandomSampler(seed=0), pruner=_pruner(config)
    )


def _state_and_value(t: Trial) -> tuple[Any, float | None]:
    from optuna.trial import TrialState

    states = {
        "finished": TrialState.COMPLETE,
        "running": TrialState.RUNNING,
        "stopped": TrialState.PRUNED,
    }
    state = states.get(t.state, TrialState.FAIL)
    value: float | None = t.value
    if value is not None and not math.isfinite(value):
        value = None
    if state == TrialState.COMPLETE and value is None:
        state = TrialState.FAIL  # ended without the metric: nothing to learn from
    return state, value if state == TrialState.COMPLETE else None


def _update(study: Any, config: SweepConfig, t: Trial) -> None:
    """Bring one trial of the study in step with its stored record (only running ones change)."""
    from optuna.trial import TrialState

    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, t.number)
    held = storage.get_trial(trial_id)
    if held.state != TrialState.RUNNING:
        raise _OutOfStep(f"trial {t.number} changed after it ended")
    for step, reported in t.reports.items():
        if held.intermediate_values.get(step) != reported:
            storage.set_trial_intermediate_value(trial_id, step, reported)
    for key, attr in t.attrs.items():
        if held.system_attrs.get(key) != attr:
            storage.set_trial_system_attr(trial_id, key, attr)
    state, value = _state_and_value(t)
    if state != TrialState.RUNNING:
        storage.set_trial_state_values(trial_id, state, None if value is None else [value])


def _frozen(config: SweepConfig, t: Trial) -> Any:
    from optuna.trial import TrialState, create_trial

    space = optuna_space(config.parameters) if config.method == "bayes" else {}
    params = {k: v for k, v in t.latent.items() if k in space}
    if len(params) != len(space):
        params = {}  # a prior run without latent values: its metric still counts below
    state, value = _state_and_value(t)
    try:
        ft = create_trial(
            state=state, value=value, params=params,
            distributions={k: space[k] for k in params},
            intermediate_values=dict(t.reports), system_attrs=dict(t.attrs),
        )  # fmt: skip
    except ValueError:  # a prior run's value outside the range: keep its metric only
        ft = create_trial(state=state, value=value, intermediate_values=dict(t.reports))
    if state == TrialState.RUNNING:
        ft.datetime_complete = None
        ft.datetime_start = datetime.now()
    return ft


def build_study(config: SweepConfig, trials: list[Trial]) -> Any:
    """A fresh in-memory Optuna study holding ``trials`` in number order (numbers match ours)."""
    study = _empty_study(config)
    study.add_trials([_frozen(config, t) for t in sorted(trials, key=lambda t: t.number)])
    return study


def _optuna() -> Any:
    import optuna

    # Optuna logs every study it creates at INFO; the controller creates one per call.
    if optuna.logging.get_verbosity() < optuna.logging.WARNING:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
