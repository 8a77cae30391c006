"""Agents running function trials in this process: the locked config, count, failures,
hyperband stopping a trial, and the command macros of program trials."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pytest

from fulmen import track
from fulmen.sweep import parse
from fulmen.sweep._command import build
from fulmen.sweep._config import MACROS, SweepConfigError


def test_a_trial_gets_the_sweeps_run_id_parameters_and_a_locked_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sweep_id = track.sweep(
        {"method": "grid", "metric": {"name": "loss"},
         "parameters": {"lr": {"values": [0.1]}, "opt": {"parameters": {"m": {"value": 0.9}}}}},
        project="sweeps",
    )  # fmt: skip
    seen = {}

    def train() -> None:
        run = track.init(project="elsewhere", config={"lr": 1.0, "epochs": 3})
        run.config.update({"lr": 5.0, "extra": "kept"}, allow_val_change=True)
        run.config.lr = 6.0
        seen.update(id=run.id, project=run.project, config=run.config.as_dict())
        track.log({"loss": 0.5})

    with caplog.at_level(logging.WARNING, logger="fulmen.sweep"):
        assert track.agent(sweep_id, function=train) == 1
    trial = track.Api().sweep(sweep_id).trials[0]
    assert seen["id"] == trial.run_id
    assert seen["project"] == "sweeps"
    assert seen["config"] == {"lr": 0.1, "epochs": 3, "opt": {"m": 0.9}, "extra": "kept"}
    messages = [r.getMessage() for r in caplog.records]
    assert "Config item 'lr' was locked by 'sweep' (ignored update)." in messages
    assert "Ignored fulmen.track.init() arg project when running a sweep." in messages
    assert (trial.state, trial.value) == ("finished", 0.5)
    run = track.Api().run(trial.run_id)
    assert run.config["lr"] == 0.1
    assert track.run is None  # the agent ended the trial's run


def test_count_is_per_agent_and_a_failing_trial_is_recorded_failed_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sweep_id = track.sweep(
        {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1, 2, 3]}}}
    )

    def train() -> None:
        run = track.init()
        if run.config.x == 1:
            raise RuntimeError("boom")
        track.log({"loss": float(run.config.x)})

    with caplog.at_level(logging.ERROR, logger="fulmen.sweep"):
        assert track.agent(sweep_id, function=train, count=2) == 2
    assert "RuntimeError: boom" in caplog.text
    sweep = track.Api().sweep(sweep_id)
    assert [(t.state, t.value) for t in sweep.trials] == [("failed", None), ("finished", 2.0)]
    assert sweep.runs[0].state == "failed"
    assert track.agent(sweep_id, function=train) == 1  # the one left; then the sweep is done
    assert sweep.state == "finished"
    assert sweep.best_run().config["x"] == 2
    assert sweep.best_run(order="-loss").config["x"] == 3
    assert sweep.best_run(order="+summary_metrics.loss").config["x"] == 2


def test_hyperband_stops_a_bad_function_trial_and_its_run_ends_stopped() -> None:
    # one bracket (max_iter / min_iter < eta): the second trial, worse at the first rung, stops
    sweep_id = track.sweep({
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"b": {"values": [1, 10]}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 2, "eta": 3},
    })  # fmt: skip
    logged = []

    def train() -> None:
        run = track.init()
        n = 0
        for _ in range(3 if run.config.b == 1 else 100):
            track.log({"loss": float(run.config.b)})
            n += 1
            time.sleep(0.05)
        logged.append(n)

    track.agent(sweep_id, function=train)
    sweep = track.Api().sweep(sweep_id)
    states = [t.state for t in sweep.trials]
    assert states == ["finished", "stopped"]
    assert [r.state for r in sweep.runs] == ["finished", "stopped"]
    assert len(logged) == 1  # the stopped trial never got to the end of its loop
    assert sweep.trials[1].reports[1] == 10.0
    assert sweep.state == "finished"


def test_bayes_with_nothing_to_search_is_an_error_at_sweep_time() -> None:
    with pytest.raises(SweepConfigError, match="method 'bayes' has no parameter to search"):
        track.sweep({"method": "bayes", "metric": {"name": "m"},
                     "parameters": {"x": {"values": [1]}}})  # fmt: skip


def test_agent_checks_its_arguments() -> None:
    sweep_id = track.sweep({"method": "grid", "parameters": {"x": {"value": 1}}}, project="p")
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        track.agent(sweep_id, function=lambda: None, count=0)
    with pytest.raises(ValueError, match="belongs to project 'p', not 'q'"):
        track.agent(sweep_id, function=lambda: None, project="q")
    with pytest.raises(KeyError, match="no sweep 'nope'"):
        track.agent("p/nope", function=lambda: None)
    with pytest.raises(ValueError, match="has no 'program' to run"):
        track.agent(sweep_id)
    with pytest.raises(ValueError, match="belongs to project 'p', not 'q'"):
        track.Api().sweep(f"q/{sweep_id}")
    assert track.Api().sweep(f"p/{sweep_id}").state == "running"


def test_every_macro_expands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_FLAG", "on")
    config = parse({
        "method": "grid", "program": "train.py",
        "command": [*MACROS, "${envvar:MY_FLAG}", "--cfg=${args_json_file}"],
    })  # fmt: skip
    flat = {"lr": 0.1, "deep": True, "off": False, "opt.m": 0.9}
    nested = {"lr": 0.1, "deep": True, "off": False, "opt": {"m": 0.9}}
    argv = build(config, flat, nested, tmp_path / "p.json")
    expected = [
        *(["/usr/bin/env"] if Path("/usr/bin/env").exists() else []),
        sys.executable,
        "train.py",
        "--lr=0.1", "--deep=True", "--off=False", "--opt.m=0.9",
        "--lr", "0.1", "--deep", "True", "--off", "False", "--opt.m", "0.9",
        "lr=0.1", "deep=True", "off=False", "opt.m=0.9",
        "--lr=0.1", "--deep", "--opt.m=0.9",
        json.dumps(nested),
        str(tmp_path / "p.json"),
        "+lr=0.1", "+deep=True", "+off=False", "+opt.m=0.9",
        "++lr=0.1", "++deep=True", "++off=False", "++opt.m=0.9",
        "on",
        f"--cfg={tmp_path / 'p.json'}",
    ]  # fmt: skip
    assert argv == expected
    with pytest.raises(SweepConfigError, match="NOT_SET is not set"):
        build(parse({"method": "grid", "command": ["${envvar:NOT_SET}"]}), {}, {}, tmp_path)
    with pytest.raises(SweepConfigError, match="'program' is required"):
        build(parse({"method": "grid"}), {}, {}, tmp_path)


def test_a_trial_writing_its_run_elsewhere_is_still_read(tmp_path: Path) -> None:
    sweep_id = track.sweep({"method": "grid", "metric": {"name": "loss"},
                            "parameters": {"x": {"values": [3]}}})  # fmt: skip

    def train() -> None:
        run = track.init(dir=tmp_path / "elsewhere")
        track.log({"loss": float(run.config.x)})

    track.agent(sweep_id, function=train)
    sweep = track.Api().sweep(sweep_id)
    [trial] = sweep.trials
    assert (trial.state, trial.value) == ("finished", 3.0)
    assert trial.run_dir is not None
    assert Path(trial.run_dir).parent == tmp_path / "elsewhere" / "fulmen"
    assert [r.id for r in sweep.runs] == [trial.run_id]
