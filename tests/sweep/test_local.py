"""The local controller: one SQLite file shared by agent processes started at different times."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from fulmen.sweep import LocalController
from fulmen.track import Api
from tests.sweep.conftest import child_env

GRID = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {"a": {"values": [1, 2, 3, 4]}, "b": {"min": 0, "max": 2}, "c": {"value": 7}},
}
RANDOM_FINITE = {
    "method": "random",
    "metric": {"name": "loss"},
    "parameters": {"a": {"values": ["x", "y", "z"]}, "b": {"min": 1, "max": 4}},
}

AGENT = """
import sys, time, fulmen.track as wandb
def train():
    run = wandb.init()
    time.sleep(float(sys.argv[2]))
    wandb.log({"loss": run.config.b * 1.0})
wandb.agent(sys.argv[1], function=train)
"""


def _agents(tmp_path: Path, sweep_id: str, n: int, sleep: float = 0.05) -> list[Any]:
    procs = []
    for i in range(n):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(AGENT), sweep_id, str(sleep)],
                cwd=tmp_path,
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        time.sleep(0.1 * i)  # started at different times
    return procs


def _wait(procs: list[Any]) -> None:
    for p in procs:
        _out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "size"), [(GRID, 12), (RANDOM_FINITE, 12)])
def test_three_agent_processes_never_repeat_a_configuration(
    tmp_path: Path, config: dict[str, Any], size: int
) -> None:
    from fulmen import track

    sweep_id = track.sweep(config, project="p")
    _wait(_agents(tmp_path, sweep_id, 3))
    sweep = Api().sweep(f"p/{sweep_id}")
    trials = sweep.trials
    configs = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(configs) == size
    assert len(set(configs)) == size  # every point exactly once
    assert all(t.state == "finished" for t in trials)
    assert sweep.state == "finished"
    assert len({t.agent for t in trials}) >= 2  # the work was shared
    # each trial's run holds the sweep's parameters as its config, and the metric it logged
    for run, trial in zip(sweep.runs, trials, strict=True):
        assert run.id == trial.run_id
        assert {k: run.config[k] for k in trial.params} == trial.params
        assert run.summary["loss"] == trial.value


@pytest.mark.slow
def test_three_bayes_agent_processes_share_the_search(tmp_path: Path) -> None:
    from fulmen import track

    config = {"method": "bayes", "metric": {"name": "loss"}, "run_cap": 9,
              "parameters": {"b": {"min": 0.0, "max": 4.0}, "k": {"values": [1, 2]}}}  # fmt: skip
    sweep_id = track.sweep(config, project="p")
    _wait(_agents(tmp_path, sweep_id, 3))
    trials = Api().sweep(sweep_id).trials
    assert [t.number for t in trials] == list(range(9))
    assert all(t.state == "finished" and t.value == t.params["b"] for t in trials)
    assert len({t.params["b"] for t in trials}) == 9  # parallel agents never drew the same point
    assert all(set(t.latent) == {"b", "k"} for t in trials)


@pytest.mark.slow
def test_a_killed_agents_trial_is_marked_crashed_and_the_sweep_finishes(tmp_path: Path) -> None:
    from fulmen import track

    sweep_id = track.sweep(
        {"method": "grid", "metric": {"name": "loss"}, "parameters": {"b": {"values": [1, 2, 3]}}},
        project="p",
    )
    [victim] = _agents(tmp_path, sweep_id, 1, sleep=60)
    controller = LocalController(tmp_path / "fulmen")
    deadline = time.monotonic() + 60
    while not controller.trials(sweep_id) or not any(
        (tmp_path / "fulmen").glob(f"run-*-{controller.trials(sweep_id)[0].run_id}")
    ):
        assert time.monotonic() < deadline, "the agent never started its trial"
        time.sleep(0.1)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    _wait(_agents(tmp_path, sweep_id, 2))
    trials = controller.trials(sweep_id)
    assert [t.state for t in trials] == ["crashed", "finished", "finished"]
    assert sorted(t.params["b"] for t in trials) == [1, 2, 3]
    assert controller.sweep(sweep_id).state == "finished"
    controller.close()


def test_next_trial_claims_distinct_trials_and_respects_run_cap(tmp_path: Path) -> None:
    c = LocalController(tmp_path)
    sweep_id = c.create({"method": "random", "run_cap": 3,
                         "parameters": {"x": {"min": 0.0, "max": 1.0}}}, "p")  # fmt: skip
    a, b = c.register_agent(sweep_id), c.register_agent(sweep_id)
    claims = [c.next_trial(sweep_id, a), c.next_trial(sweep_id, b), c.next_trial(sweep_id, a)]
    assert [x.kind for x in claims] == ["trial"] * 3
    assert len({x.trial.run_id for x in claims if x.trial}) == 3
    done = c.next_trial(sweep_id, b)
    assert (done.kind, done.reason) == ("done", "run_cap 3 reached")
    assert c.sweep(sweep_id).state == "running"  # three trials still run
    for x in claims:
        assert x.trial is not None
        c.finish_trial(sweep_id, x.trial.number, "finished", 1.0)
    assert c.sweep(sweep_id).state == "finished"
    c.close()


@pytest.mark.parametrize("config", [GRID, RANDOM_FINITE], ids=["grid", "random"])
def test_a_search_space_tried_whole_finishes_with_its_last_trial(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    """Agents whose counts add up to the space's size never ask once more: the sweep finishes
    when the last trial ends, not at an ask that never comes."""
    c = LocalController(tmp_path)
    sweep_id = c.create(config, "p")
    agent = c.register_agent(sweep_id)
    size = 12  # GRID: 4 x 3 x 1; RANDOM_FINITE: 3 x 4
    claims = [c.next_trial(sweep_id, agent) for _ in range(size)]
    assert [x.kind for x in claims] == ["trial"] * size
    assert len({json.dumps(x.trial.params, sort_keys=True) for x in claims if x.trial}) == size
    for x in claims[:-1]:
        assert x.trial is not None
        c.finish_trial(sweep_id, x.trial.number, "finished", 1.0)
    assert c.sweep(sweep_id).state == "running"  # the last trial still runs
    last = claims[-1].trial
    assert last is not None
    c.finish_trial(sweep_id, last.number, "crashed", None)
    assert c.sweep(sweep_id).state == "finished"
    assert c.next_trial(sweep_id, agent).kind == "done"
    c.close()


def test_pause_resume_stop_and_cancel(tmp_path: Path) -> None:
    c = LocalController(tmp_path)
    sweep_id = c.create({"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}, "p")
    agent = c.register_agent(sweep_id)
    c.set_state(sweep_id, "paused")
    assert c.next_trial(sweep_id, agent).kind == "wait"
    c.set_state(sweep_id, "running")
    assert c.next_trial(sweep_id, agent).kind == "trial"
    c.set_state(sweep_id, "stopped")
    assert c.next_trial(sweep_id, agent).reason == "the sweep is stopped"
    c.set_state(sweep_id, "canceled")
    with pytest.raises(ValueError, match="is canceled; it cannot become running"):
        c.set_state(sweep_id, "running")
    with pytest.raises(ValueError, match="sweep state must be one of"):
        c.set_state(sweep_id, "asleep")
    with pytest.raises(KeyError, match="no sweep 'nope'"):
        c.sweep("nope")
    c.close()


def test_a_trial_reaching_the_target_ends_the_sweep(tmp_path: Path) -> None:
    c = LocalController(tmp_path)
    sweep_id = c.create({"method": "random", "metric": {"name": "m", "goal": "maximize",
                                                        "target": 0.9},
                         "parameters": {"x": {"min": 0.0, "max": 1.0}}}, "p")  # fmt: skip
    agent = c.register_agent(sweep_id)
    claim = c.next_trial(sweep_id, agent)
    assert claim.trial is not None
    c.finish_trial(sweep_id, claim.trial.number, "finished", 0.95)
    assert c.next_trial(sweep_id, agent).kind == "done"
    assert c.sweep(sweep_id).state == "finished"
    c.close()


def test_two_controllers_on_one_file_keep_their_optuna_studies_in_step(tmp_path: Path) -> None:
    # Two controllers are two agent processes: each keeps its own in-memory Optuna study and
    # must see the trials (and hyperband reports) the other stored.
    from fulmen.sweep._engine import build_study

    config = {
        "method": "bayes", "metric": {"name": "m"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "k": {"values": [1, 2, 3]}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
    }  # fmt: skip
    one, two = LocalController(tmp_path), LocalController(tmp_path)
    sweep_id = one.create(config, "p", seed=5)
    agents = {one: one.register_agent(sweep_id), two: two.register_agent(sweep_id)}
    for i in range(14):
        c = one if i % 3 else two
        claim = c.next_trial(sweep_id, agents[c])
        assert claim.trial is not None
        assert claim.trial.number == i
        other = two if c is one else one
        other.report(sweep_id, i, 1, claim.trial.params["x"])  # reported by the other process
        if i % 4 != 3:  # some stay running while the next are claimed
            c.finish_trial(sweep_id, i, "finished" if i % 5 else "failed", claim.trial.params["x"])
    trials = one.trials(sweep_id)
    fresh = build_study(one.store._configs[sweep_id], trials).get_trials(deepcopy=False)
    for c in (one, two):
        c.next_trial(sweep_id, agents[c])  # brings its study in step with the file
        now = c.trials(sweep_id)
        studies, config = c.store._studies, c.store._configs[sweep_id]
        held = studies.synced(sweep_id, config, now).get_trials(deepcopy=False)
        assert len(held) == len(now) == (15 if c is one else 16)
        assert [(t.state, t.value, t.intermediate_values) for t in held[:14]] == [
            (t.state, t.value, t.intermediate_values) for t in fresh
        ]
    one.close()
    two.close()


def test_a_dead_agents_trial_is_settled_from_its_run_not_lost(tmp_path: Path) -> None:
    from fulmen import track

    c = LocalController(tmp_path / "fulmen")
    sweep_id = c.create({"method": "grid", "metric": {"name": "loss"},
                         "parameters": {"b": {"values": [1, 2, 3]}}}, "p")  # fmt: skip
    dead = c.register_agent(sweep_id)
    first, second = c.next_trial(sweep_id, dead).trial, c.next_trial(sweep_id, dead).trial
    assert first is not None
    assert second is not None
    c.unregister_agent(dead)  # its lock is free: as after kill -9
    # the first trial's run went on without its agent and finished; the second never started
    run = track.init(id=first.run_id, project="p")
    run.log({"loss": 0.25})
    run.finish()
    alive = c.register_agent(sweep_id)
    assert c.next_trial(sweep_id, alive).kind == "trial"
    states = [(t.state, t.value) for t in c.trials(sweep_id)]
    assert states == [("finished", 0.25), ("crashed", None), ("running", None)]
    c.close()


def test_prior_runs_join_the_sweep_and_inform_bayes(tmp_path: Path) -> None:
    from fulmen import track

    ids = []
    for x in (0.1, 0.9):
        run = track.init(project="p", config={"x": x, "k": 2})
        run.log({"loss": x})
        run.finish()
        ids.append(run.id)
    sweep_id = track.sweep({"method": "bayes", "metric": {"name": "loss"},
                            "parameters": {"x": {"min": 0.0, "max": 1.0},
                                           "k": {"values": [1, 2]}}},
                           project="p", prior_runs=ids)  # fmt: skip
    sweep = Api().sweep(sweep_id)
    assert [(t.run_id, t.state, t.value, t.params) for t in sweep.trials] == [
        (ids[0], "finished", 0.1, {"x": 0.1, "k": 2}),
        (ids[1], "finished", 0.9, {"x": 0.9, "k": 2}),
    ]
    assert sweep.trials[0].latent == {"x": 0.1, "k": 1}  # k=2 is the second value
    assert sweep.best_run().id == ids[0]
    with pytest.raises(ValueError, match="no run 'nope'"):
        track.sweep({"method": "random"}, prior_runs=["nope"])


@pytest.mark.slow
def test_sigterm_to_a_function_agent_ends_its_trial_killed_and_the_agent(tmp_path: Path) -> None:
    from fulmen import track

    sweep_id = track.sweep({"method": "grid", "parameters": {"b": {"values": [1, 2]}}})
    [agent] = _agents(tmp_path, sweep_id, 1, sleep=120)
    c = LocalController(tmp_path / "fulmen")
    deadline = time.monotonic() + 60
    while not c.trials(sweep_id) or not list((tmp_path / "fulmen").glob("run-*")):
        assert time.monotonic() < deadline, "the agent never started its trial"
        time.sleep(0.1)
    time.sleep(0.5)  # inside the trial function now
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err.decode()[-2000:]
    assert [t.state for t in c.trials(sweep_id)] == ["killed"]  # no second trial started
    assert [r.state for r in Api().sweep(sweep_id).runs] == ["killed"]
    c.close()
