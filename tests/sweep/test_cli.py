"""``fulmen sweep`` and ``fulmen agent`` end to end: real processes, the program run with the
command macros, hyperband stopping a subprocess trial, signals forwarded to the trial."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fulmen.sweep import LocalController
from fulmen.track import Api
from tests.sweep.conftest import child_env

PROGRAM = """
import argparse, time
import fulmen.track as wandb

parser = argparse.ArgumentParser()
parser.add_argument("--b", type=float)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--fail", default="False")
args = parser.parse_args()
run = wandb.init(config={"steps": args.steps})
assert run.config.b == args.b  # the config and the arguments agree
if args.fail == "True":
    raise SystemExit(3)
for _ in range(args.steps * (100 if args.b >= 10 else 1)):  # b >= 10: a long, bad trial
    wandb.log({"loss": args.b})
    time.sleep(0.05)
"""


def _fulmen(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fulmen", *args], cwd=cwd, env=child_env(), capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _write(tmp_path: Path, yaml: str) -> Path:
    (tmp_path / "train.py").write_text(textwrap.dedent(PROGRAM))
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(yaml))
    return path


@pytest.mark.slow
def test_sweep_then_agent_runs_the_program_and_records_each_trial(tmp_path: Path) -> None:
    _write(tmp_path, """\
        method: grid
        program: train.py
        metric: {name: loss}
        parameters:
          b: {values: [1.0, 2.0]}
          fail: {values: [false, true]}
        """)  # fmt: skip
    made = _fulmen("sweep", "sweep.yaml", "--project", "cli", "--name", "first", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.strip().splitlines()
    sweep_id = lines[0].rsplit(" ", 1)[-1]
    assert lines[-1] == f"fulmen agent cli/{sweep_id}"
    ran = _fulmen(*lines[-1].split()[1:], "--count", "3", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "agent ran 3 trial(s)" in ran.stdout
    sweep = Api().sweep(f"cli/{sweep_id}")
    assert sweep.name == "first"
    assert [(t.params, t.state, t.value) for t in sweep.trials] == [
        ({"b": 1.0, "fail": False}, "finished", 1.0),
        ({"b": 1.0, "fail": True}, "failed", None),
        ({"b": 2.0, "fail": False}, "finished", 2.0),
    ]
    assert sweep.state == "running"
    again = _fulmen("agent", sweep_id, cwd=tmp_path)
    assert "agent ran 1 trial(s)" in again.stdout
    assert sweep.state == "finished"
    # (a program that exits with SystemExit(3) leaves its run "finished" in the tracker's
    # atexit hook; the trial is "failed" from the exit status)
    assert [t.state for t in sweep.trials] == ["finished", "failed", "finished", "failed"]
    assert len(sweep.runs) == 4


@pytest.mark.slow
def test_pause_resume_stop_cancel_from_the_command_line(tmp_path: Path) -> None:
    _write(tmp_path, "method: random\nprogram: train.py\nparameters:\n  b: {min: 0.0, max: 1.0}\n")
    made = _fulmen("sweep", "sweep.yaml", cwd=tmp_path)
    sweep_id = made.stdout.splitlines()[0].rsplit(" ", 1)[-1]
    for flag, state in (("--pause", "paused"), ("--resume", "running"), ("--stop", "stopped"),
                        ("--cancel", "canceled")):  # fmt: skip
        out = _fulmen("sweep", flag, sweep_id, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"fulmen: sweep {sweep_id} is {state}"
        assert Api().sweep(sweep_id).state == state
    bad = _fulmen("sweep", "--resume", sweep_id, cwd=tmp_path)
    assert bad.returncode != 0
    assert "is canceled" in bad.stderr
    assert (
        _fulmen("agent", sweep_id, cwd=tmp_path)
        .stdout.strip()
        .endswith(f"agent ran 0 trial(s) of sweep {sweep_id}")
    )
    (tmp_path / "bad.yaml").write_text("method: grid\nparameters:\n  lr: {min: 0.0, max: 1.0}\n")
    bad = _fulmen("sweep", "bad.yaml", cwd=tmp_path)
    assert bad.returncode != 0
    assert "parameters.lr: method 'grid' needs" in bad.stderr


@pytest.mark.slow
def test_hyperband_stops_a_program_trial_with_a_signal_and_its_run_ends_stopped(
    tmp_path: Path,
) -> None:
    _write(tmp_path, """\
        method: grid
        program: train.py
        metric: {name: loss}
        parameters:
          b: {values: [1.0, 10.0]}
        early_terminate: {type: hyperband, min_iter: 1, max_iter: 2, eta: 3}
        command: ["${env}", "${interpreter}", "${program}", "${args}", "--steps=4"]
        """)  # fmt: skip
    made = _fulmen("sweep", "sweep.yaml", cwd=tmp_path)
    sweep_id = made.stdout.splitlines()[0].rsplit(" ", 1)[-1]
    ran = _fulmen("agent", sweep_id, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    sweep = Api().sweep(sweep_id)
    assert [t.state for t in sweep.trials] == ["finished", "stopped"]
    assert [r.state for r in sweep.runs] == ["finished", "stopped"]
    assert sweep.runs[1].rows < 400


@pytest.mark.slow
def test_sigterm_to_the_agent_is_forwarded_to_the_trial_and_the_agent_leaves(
    tmp_path: Path,
) -> None:
    _write(tmp_path, """\
        method: grid
        program: train.py
        metric: {name: loss}
        parameters: {b: {values: [1.0, 2.0]}}
        command: ["${interpreter}", "${program}", "${args}", "--steps=2000"]
        """)  # fmt: skip
    made = _fulmen("sweep", "sweep.yaml", cwd=tmp_path)
    sweep_id = made.stdout.splitlines()[0].rsplit(" ", 1)[-1]
    agent = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "agent", sweep_id], cwd=tmp_path, env=child_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    controller = LocalController(tmp_path / "fulmen")
    deadline = time.monotonic() + 60
    while not any(r.rows for r in Api().sweep(sweep_id).runs):
        assert time.monotonic() < deadline, "the trial never logged"
        time.sleep(0.1)
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
    trials = controller.trials(sweep_id)
    assert [t.state for t in trials] == ["killed"]  # and no second trial was started
    [run] = Api().sweep(sweep_id).runs
    assert run.state == "killed"
    assert run.rows < 2000
    controller.close()
