"""The server as the controller, end to end: a real ``fulmen server`` process on loopback, agents
in real processes (and in this one), talking HTTP. Grid without duplicates across 3 agent
processes, a hyperband stop told over HTTP, 4 agents with one killed by ``kill -9`` (its trial
settled crashed by the heartbeat timeout), the server killed and restarted mid-sweep, and the
commands against a server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from fulmen import track
from fulmen.sweep import LocalController, ServerController
from fulmen.sweep._api import controller_for
from tests.e2e.test_server_e2e import Server
from tests.sweep.conftest import child_env

pytestmark = pytest.mark.slow
AGENT_TIMEOUT = 3.0  # the shared server's: a killed agent's trial is settled 3 s after its death

AGENT = """
import sys, time, fulmen.track as wandb
def train():
    run = wandb.init()
    time.sleep(float(sys.argv[2]))
    wandb.log({"loss": float(run.config.b)})
wandb.agent(sys.argv[1], function=train)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("sweep-server") / "data")
    with mock.patch.dict(os.environ, {"FULMEN_SWEEP_AGENT_TIMEOUT": str(AGENT_TIMEOUT)}):
        s.start()
    yield s
    _stop(s)


def _stop(s: Server) -> None:
    if s.proc is not None and s.proc.poll() is None:
        s.proc.terminate()
        s.proc.wait(10)


@pytest.fixture
def online(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """This process (and the agents it starts) log to the server."""
    monkeypatch.setenv("FULMEN_BASE_URL", server.url)
    return server


def _grid(project: str, values: list[int]) -> str:
    sweep_id = track.sweep(
        {"method": "grid", "metric": {"name": "loss"}, "parameters": {"b": {"values": values}}},
        project=project,
    )
    return f"local/{project}/{sweep_id}"


def _agent(cwd: Path, path: str, sleep: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(AGENT), path, str(sleep)], cwd=cwd,
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _wait(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        _out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return found


def test_a_server_is_the_controller_when_runs_log_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(controller_for(), LocalController)
    monkeypatch.setenv("FULMEN_BASE_URL", "http://127.0.0.1:9")
    chosen = controller_for()
    assert isinstance(chosen, ServerController)
    assert chosen.root == tmp_path / "fulmen"  # trial files and runs stay on this machine
    monkeypatch.setenv("FULMEN_MODE", "offline")  # offline runs: the sweep stays local too
    assert isinstance(controller_for(), LocalController)


def test_no_server_or_a_wrong_key_is_a_clear_error(tmp_path: Path, server: Server) -> None:
    config = {"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    gone = ServerController("http://127.0.0.1:9", root=tmp_path, entity="local", retry_s=0.5)
    with pytest.raises(ConnectionError, match=r"server at http://127.0.0.1:9 did not answer"):
        gone.create(config, "p")
    wrong = ServerController(server.url, "not-a-key", root=tmp_path, retry_s=0.5)
    with pytest.raises(PermissionError, match="refused the key: the API key is not valid"):
        wrong.create(config, "p", entity="local")


def test_three_agent_processes_run_every_grid_point_once_through_the_server(
    tmp_path: Path, online: Server
) -> None:
    path = _grid("grid3", list(range(12)))
    procs = [_agent(tmp_path, path, 0.05) for _ in range(3)]
    _wait(procs)
    sweep = track.Api().sweep(path)  # read from the server (FULMEN_BASE_URL)
    trials = sweep.trials
    points = [t.params["b"] for t in trials]
    assert sorted(points) == list(range(12))  # every point exactly once
    assert [(t.state, t.value) for t in trials] == [("finished", float(b)) for b in points]
    assert sweep.state == "finished"
    assert len({t.agent for t in trials}) >= 2  # the work was shared
    runs = sweep.runs  # the trials' runs, logged online to the same server
    assert [r.id for r in runs] == [t.run_id for t in trials]
    assert {r.state for r in runs} == {"finished"}
    assert [r.summary["loss"] for r in runs] == [float(b) for b in points]
    assert sweep.best_run().summary["loss"] == 0.0
    page = json.loads(online.get(f"/entities/local/projects/grid3/sweeps/{sweep.id}"))
    assert page["progress"]["states"] == {"finished": 12}


def test_hyperband_tells_a_trial_to_stop_over_http(online: Server) -> None:
    sweep_id = track.sweep({
        "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"b": {"values": [1, 10]}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 2, "eta": 3},
    }, project="hb")  # fmt: skip
    logged = []

    def train() -> None:
        run = track.init()
        n = 0
        for _ in range(3 if run.config.b == 1 else 100):
            track.log({"loss": float(run.config.b)})
            n += 1
            time.sleep(0.05)
        logged.append(n)

    assert track.agent(sweep_id, function=train) == 2
    sweep = track.Api(base_url=online.url).sweep(f"local/hb/{sweep_id}")
    assert [t.state for t in sweep.trials] == ["finished", "stopped"]
    assert sweep.trials[1].reports[1] == 10.0  # the report the server judged
    assert len(logged) == 1  # the stopped trial never reached the end of its loop
    assert [r.state for r in sweep.runs] == ["finished", "stopped"]  # as the server has them
    assert sweep.runs[1].rows < 100
    assert sweep.state == "finished"


def test_prior_runs_on_the_server_join_a_sweep_made_there(online: Server) -> None:
    run = track.init(project="prior", config={"x": 0.25})
    track.log({"m": 0.5})
    run.finish()
    sweep_id = track.sweep(
        {"method": "bayes", "metric": {"name": "m"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}},
        project="prior", prior_runs=[run.id],
    )  # fmt: skip
    [prior] = track.Api().sweep(f"prior/{sweep_id}").trials
    assert (prior.run_id, prior.params, prior.state, prior.value) == (
        run.id, {"x": 0.25}, "finished", 0.5
    )  # fmt: skip
    assert prior.latent == {"x": 0.25}
    with pytest.raises(ValueError, match="no run 'nope'"):
        track.sweep({"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}},
                    project="prior", prior_runs=["nope"])  # fmt: skip


def test_four_agents_one_killed_mid_trial_the_sweep_finishes_its_trial_crashed(
    tmp_path: Path, online: Server
) -> None:
    path = _grid("kill", list(range(8)))
    api = ServerController(online.url, root=tmp_path / "fulmen")
    sweep_id = api.resolve(path)
    victim = _agent(tmp_path, path, 60)  # its trial runs long
    running = _until("the victim's trial", lambda: [t for t in api.trials(sweep_id)
                                                    if t.state == "running"])  # fmt: skip
    [held] = running
    _until("the victim's run on the server", lambda: api.run_of("local", "kill", held.run_id))
    survivors = [_agent(tmp_path, path, 0.1) for _ in range(3)]
    time.sleep(0.5)
    os.kill(victim.pid, signal.SIGKILL)  # mid-trial
    victim.communicate(timeout=30)
    _wait(survivors)
    # the survivors left when no point was left; the victim's trial is settled by the server once
    # its heartbeats are AGENT_TIMEOUT old (any look at the sweep settles it)
    _until("the sweep finished", lambda: api.sweep(sweep_id).state == "finished", 30)
    trials = api.trials(sweep_id)
    assert sorted(t.params["b"] for t in trials) == list(range(8))
    assert [t.state for t in trials if t.number != held.number] == ["finished"] * 7
    assert trials[held.number].state == "crashed"
    assert trials[held.number].agent == held.agent
    assert {t.agent for t in trials} - {held.agent}  # the survivors ran the rest
    assert api.run_of("local", "kill", held.run_id).state == "running"  # the run never ended


def test_the_server_killed_and_restarted_mid_sweep_loses_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server(tmp_path / "server")
    server.start()
    try:
        monkeypatch.setenv("FULMEN_BASE_URL", server.url)
        path = _grid("restart", list(range(10)))
        api = ServerController(server.url, root=tmp_path / "fulmen")
        sweep_id = api.resolve(path)
        agents = [_agent(tmp_path, path, 0.3) for _ in range(2)]
        _until("3 finished trials", lambda: sum(t.state == "finished"
                                                for t in api.trials(sweep_id)) >= 3)  # fmt: skip
        server.kill()  # kill -9, mid-sweep: the agents are claiming, running and finishing
        time.sleep(1.0)
        server.start()  # the same data folder and port
        _wait(agents)  # they retried and went on
        trials = api.trials(sweep_id)
        assert sorted(t.params["b"] for t in trials) == list(range(10))  # no duplicate, no gap
        assert [t.state for t in trials] == ["finished"] * 10
        assert [t.value for t in trials] == [float(t.params["b"]) for t in trials]
        assert api.sweep(sweep_id).state == "finished"
        runs = [api.run_of("local", "restart", t.run_id) for t in trials]
        assert [r.state for r in runs] == ["finished"] * 10  # every run reached the server
    finally:
        _stop(server)


PROGRAM = """
import argparse, time
import fulmen.track as wandb

parser = argparse.ArgumentParser()
parser.add_argument("--b", type=float)
args = parser.parse_args()
run = wandb.init(config={"steps": 3})
for _ in range(3):
    wandb.log({"loss": args.b})
    time.sleep(0.02)
"""


def _fulmen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fulmen", *args], cwd=cwd, env=child_env(), capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_commands_against_a_server(tmp_path: Path, online: Server) -> None:
    (tmp_path / "train.py").write_text(textwrap.dedent(PROGRAM))
    (tmp_path / "sweep.yaml").write_text(
        "method: grid\nprogram: train.py\nmetric: {name: loss}\n"
        "parameters:\n  b: {values: [1.0, 2.0, 3.0]}\n"
    )
    made = _fulmen("sweep", "sweep.yaml", "--project", "cli", "--name", "remote", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.strip().splitlines()
    sweep_id = lines[0].rsplit(" ", 1)[-1]
    assert lines[-1] == f"fulmen agent local/cli/{sweep_id}"
    ran = _fulmen(*lines[-1].split()[1:], "--count", "2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "agent ran 2 trial(s)" in ran.stdout
    paused = _fulmen("sweep", "--pause", sweep_id, cwd=tmp_path)  # a bare id: found on the server
    assert paused.stdout.strip() == f"fulmen: sweep {sweep_id} is paused"
    page = json.loads(online.get(f"/entities/local/projects/cli/sweeps/{sweep_id}"))
    assert (page["name"], page["state"]) == ("remote", "paused")
    assert [(t["params"], t["state"], t["value"]) for t in page["trials"]] == [
        ({"b": 1.0}, "finished", 1.0), ({"b": 2.0}, "finished", 2.0)
    ]  # fmt: skip
    for t in page["trials"]:  # each program trial logged its run online to the server
        run = json.loads(online.get(f"/entities/local/projects/cli/runs/{t['run_id']}"))
        assert (run["state"], run["config"]["b"], run["summary"]["loss"]) == (
            "finished", t["params"]["b"], t["value"]
        )  # fmt: skip
    assert _fulmen("sweep", "--resume", f"cli/{sweep_id}", cwd=tmp_path).returncode == 0
    assert "agent ran 1 trial(s)" in _fulmen("agent", f"cli/{sweep_id}", cwd=tmp_path).stdout
    assert track.Api().sweep(f"cli/{sweep_id}").state == "finished"
    bad = _fulmen("agent", "nosuchid", cwd=tmp_path)
    assert bad.returncode == 1
    assert "no sweep 'nosuchid' of entity 'local'" in bad.stderr
    (tmp_path / "bad.yaml").write_text("method: grid\nparameters:\n  lr: {min: 0.0, max: 1.0}\n")
    refused = _fulmen("sweep", "bad.yaml", cwd=tmp_path)
    assert refused.returncode == 1
    assert "parameters.lr: method 'grid' needs" in refused.stderr
