"""examples/sweep on tiny settings: ``fulmen sweep`` its sweep.yaml, then two ``fulmen agent``
processes in parallel run the Lightning program until run_cap."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fulmen.sweep import parse
from fulmen.track import Api
from tests.sweep.conftest import child_env

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweep"


def test_the_example_config_is_what_the_readme_says() -> None:
    config = parse(str(EXAMPLE / "sweep.yaml"))
    kinds = {p.name: p.distribution for p in config.parameters}
    assert kinds == {"lr": "log_uniform_values", "batch_size": "categorical",
                     "hidden": "int_uniform", "dropout": "uniform"}  # fmt: skip
    assert config.method == "bayes"
    assert config.metric is not None
    assert config.metric.name == "val_loss"
    assert config.early_terminate is not None


@pytest.mark.slow
def test_two_agents_run_the_example_in_parallel(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE / "train.py", tmp_path / "train.py")
    config = yaml.safe_load((EXAMPLE / "sweep.yaml").read_text())
    config["run_cap"] = 4
    config["command"] = ["${env}", "${interpreter}", "${program}", "${args}",
                         "--max-epochs=3", "--n=256"]  # fmt: skip
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    env = child_env()
    made = subprocess.run(
        [sys.executable, "-m", "fulmen", "sweep", "sweep.yaml", "--project", "sweep-example"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    command = made.stdout.strip().splitlines()[-1].split()
    assert command[:2] == ["fulmen", "agent"]
    agents = [
        subprocess.Popen(
            [sys.executable, "-m", "fulmen", *command[1:]],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for agent in agents:
        _, err = agent.communicate(timeout=600)
        assert agent.returncode == 0, err[-3000:]
    sweep = Api().sweep(command[2])
    trials = sweep.trials
    assert len(trials) == 4
    assert len({t.agent for t in trials}) == 2
    assert {t.state for t in trials} <= {"finished", "stopped"}
    for t in trials:
        assert 1e-4 <= t.params["lr"] <= 0.1
        assert t.params["batch_size"] in (32, 64, 128)
        assert 16 <= t.params["hidden"] <= 128
        assert 0.0 <= t.params["dropout"] <= 0.5
    for run, trial in zip(sweep.runs, trials, strict=True):
        assert run.project == "sweep-example"
        assert run.config["hidden"] == trial.params["hidden"]
        if trial.state == "finished":  # log_model=True; a trial hyperband stopped before its
            # first checkpoint (timing: the machine's load) has none to upload
            assert any(a.get("type") == "model" for a in run.artifacts)
    assert sweep.state == "finished"
    assert sweep.best_run().summary["val_loss"] == min(t.value for t in trials if t.value)
