"""The sweep routes in process (the ASGI client): validation errors naming the field, the claim
loop, the sweep page's data, replayed claims, auth, and dead agents settled by heartbeat timeout
from their run's state in the store (with a grace period after a restart)."""

from __future__ import annotations

import time
import typing
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fulmen.server._api_sweeps import FinishBody, ServerSweeps, StateBody
from fulmen.server.app import ServerConfig, create_app
from fulmen.server.store import open_store
from fulmen.sweep import SweepConfigError, parse
from fulmen.sweep._controller import ENDED_TRIAL_STATES, SWEEP_STATES
from tests.server.runlogs import CLIENT_HEADERS, LogWriter

BASE = "/api/v1/entities/local/projects/p/sweeps"
GRID = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {"a": {"values": [1, 2, 3]}, "b": {"values": [0.5, 2.0]}, "c": {"value": 7}},
}


def _client(tmp_path: Path, **config: Any) -> TestClient:
    return TestClient(
        create_app(ServerConfig(data=tmp_path / "data", **config)), headers=CLIENT_HEADERS
    )


def _claim(client: TestClient, sweep_id: str, agent: str, request: str | None = None) -> Any:
    body = {"agent": agent} if request is None else {"agent": agent, "request": request}
    answer = client.post(f"{BASE}/{sweep_id}/next", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_bad_config_is_refused_with_the_local_parsers_message(tmp_path: Path) -> None:
    client = _client(tmp_path)
    bad = {"method": "grid", "parameters": {"lr": {"min": 0.0, "max": 1.0}}}
    with pytest.raises(SweepConfigError) as local:
        parse(bad)
    answer = client.post(BASE, json={"config": bad})
    assert answer.status_code == 422
    assert answer.json()["detail"] == str(local.value)
    assert "parameters.lr" in answer.json()["detail"]
    cases = [
        ({"parameters": {"x": {"values": [1]}}}, "method"),
        ({"method": "bayes", "parameters": {"x": {"min": 1, "max": 0}}}, "parameters.x"),
        ({"method": "random", "metric": {"name": "m", "goal": "up"},
          "parameters": {"x": {"values": [1]}}}, "metric.goal"),
    ]  # fmt: skip
    for config, field in cases:
        answer = client.post(BASE, json={"config": config})
        assert answer.status_code == 422, config
        assert field in answer.json()["detail"]
    missing = client.post(BASE, json={"configuration": GRID})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "config"]
    assert client.post(BASE, json={"config": GRID, "seed": -1}).status_code == 422
    assert client.get(f"{BASE}/nope1234").status_code == 404
    bad_id = client.get(f"{BASE}/a%20b")
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"].startswith("sweep id 'a b' is not valid")


def test_agents_claim_every_grid_point_once_and_the_answer_holds_the_pages_data(
    tmp_path: Path,
) -> None:
    client = _client(tmp_path)
    made = client.post(BASE, json={"config": GRID, "seed": 3}).json()
    sweep_id = made["id"]
    assert made["path"] == f"local/p/{sweep_id}"
    agents = [client.post(f"{BASE}/{sweep_id}/agents", json={"pid": 1}).json() for _ in range(2)]
    assert agents[0]["timeout_s"] == 60.0
    assert agents[0]["heartbeat_s"] == 15.0
    seen = []
    while (claim := _claim(client, sweep_id, agents[len(seen) % 2]["id"]))["kind"] == "trial":
        trial = claim["trial"]
        seen.append(trial["params"])
        loss = trial["params"]["a"] * trial["params"]["b"]
        answer = client.post(f"{BASE}/{sweep_id}/trials/{trial['number']}/finish",
                             json={"state": "finished", "value": loss})  # fmt: skip
        assert answer.json() == {"ok": True}
    # the last grid point claimed, the sweep finished with its trial: no ask was needed to end it
    assert claim == {"kind": "done", "reason": "the sweep is finished", "trial": None}
    assert sorted((p["a"], p["b"]) for p in seen) == [(a, b) for a in (1, 2, 3) for b in (0.5, 2)]
    assert all(p["c"] == 7 for p in seen)
    page = client.get(f"{BASE}/{sweep_id}").json()
    assert page["state"] == "finished"
    assert page["method"] == "grid"
    assert page["config"] == GRID
    assert page["progress"] == {"trials": 6, "states": {"finished": 6}, "run_cap": None,
                                "size": 6}  # fmt: skip
    assert [t["state"] for t in page["trials"]] == ["finished"] * 6
    assert {t["agent"] for t in page["trials"]} == {a["id"] for a in agents}
    assert page["best"]["value"] == 0.5
    assert page["best"]["params"] == {"a": 1, "b": 0.5, "c": 7}
    curve = page["best_so_far"]
    assert [c["number"] for c in curve] == list(range(6))
    assert [c["best"] for c in curve] == [min(c["value"] for c in curve[: i + 1])
                                          for i in range(6)]  # fmt: skip
    importance = page["importance"]
    assert importance["method"] in ("fanova", "ped_anova")
    assert set(importance["values"]) == {"a", "b"}  # the constant is not searched
    correlation = page["correlation"]
    assert correlation["method"] == "spearman"
    assert correlation["values"]["a"] > 0  # loss grows with a and with b
    assert correlation["values"]["b"] > 0
    assert [a["alive"] for a in page["agents"]] == [True, True]
    light = client.get(f"{BASE}/{sweep_id}", params={"trials": "false"}).json()
    assert "trials" not in light
    assert light["progress"]["trials"] == 6
    listed = client.get(BASE).json()["sweeps"]
    assert [(s["id"], s["state"], s["progress"]["trials"]) for s in listed] == [
        (sweep_id, "finished", 6)
    ]
    assert client.get("/api/v1/entities/local/sweeps").json()["sweeps"][0]["project"] == "p"
    # another project of the entity does not hold it
    assert client.get(f"/api/v1/entities/local/projects/q/sweeps/{sweep_id}").status_code == 404


def test_a_replayed_claim_gets_the_same_trial_and_reports_say_stop(tmp_path: Path) -> None:
    client = _client(tmp_path)
    config = {
        "method": "grid", "metric": {"name": "loss"},
        "parameters": {"b": {"values": [1, 10]}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 2, "eta": 3},
    }  # fmt: skip
    sweep_id = client.post(BASE, json={"config": config}).json()["id"]
    agent = client.post(f"{BASE}/{sweep_id}/agents", json={}).json()["id"]
    first = _claim(client, sweep_id, agent, request="r1")
    again = _claim(client, sweep_id, agent, request="r1")  # its answer was lost: sent again
    assert again["trial"]["run_id"] == first["trial"]["run_id"]
    second = _claim(client, sweep_id, agent, request="r2")
    assert second["trial"]["number"] == 1
    report = f"{BASE}/{sweep_id}/trials/0/report"
    assert client.post(report, json={"step": 1, "value": 1.0}).json() == {"stop": False}
    client.post(f"{BASE}/{sweep_id}/trials/0/finish", json={"state": "finished", "value": 1.0})
    report = f"{BASE}/{sweep_id}/trials/1/report"
    assert client.post(report, json={"step": 1, "value": 10.0}).json() == {"stop": True}
    bad = client.post(report, json={"step": -1, "value": 1.0})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "step"]
    assert client.post(f"{BASE}/{sweep_id}/trials/9/report",
                       json={"step": 1, "value": 1.0}).status_code == 404  # fmt: skip
    assert client.post(f"{BASE}/{sweep_id}/trials/1/finish",
                       json={"state": "asleep"}).status_code == 422  # fmt: skip
    client.post(f"{BASE}/{sweep_id}/trials/1/finish", json={"state": "stopped", "value": 10.0})
    page = client.get(f"{BASE}/{sweep_id}").json()
    assert [(t["state"], t["reports"]) for t in page["trials"]] == [
        ("finished", {"1": 1.0}), ("stopped", {"1": 10.0})
    ]  # fmt: skip


def test_states_agents_and_their_errors(tmp_path: Path) -> None:
    client = _client(tmp_path)
    sweep_id = client.post(BASE, json={"config": GRID}).json()["id"]
    agent = client.post(f"{BASE}/{sweep_id}/agents", json={}).json()["id"]
    state = f"{BASE}/{sweep_id}/state"
    assert client.put(state, json={"state": "paused"}).json() == {"state": "paused"}
    assert _claim(client, sweep_id, agent) == {"kind": "wait", "reason": "the sweep is paused",
                                               "trial": None}  # fmt: skip
    assert client.put(state, json={"state": "running"}).status_code == 200
    assert _claim(client, sweep_id, agent)["kind"] == "trial"
    asleep = client.put(state, json={"state": "asleep"})
    assert asleep.status_code == 422
    assert asleep.json()["detail"][0]["loc"] == ["body", "state"]
    assert client.put(state, json={"state": "canceled"}).status_code == 200
    refused = client.put(state, json={"state": "running"})
    assert refused.status_code == 409
    assert "is canceled; it cannot become running" in refused.json()["detail"]
    beat = client.post(f"{BASE}/{sweep_id}/agents/{agent}/heartbeat", json={})
    assert beat.json() == {"ok": True, "state": "canceled"}
    assert client.post(f"{BASE}/{sweep_id}/agents/nobody/heartbeat", json={}).status_code == 404
    assert client.post(f"{BASE}/{sweep_id}/next", json={"agent": "nobody"}).status_code == 404
    assert client.delete(f"{BASE}/{sweep_id}/agents/{agent}").json() == {"ok": True}
    left = client.post(f"{BASE}/{sweep_id}/next", json={"agent": agent})
    assert left.status_code == 409
    other = client.post(BASE, json={"config": GRID}).json()["id"]
    assert client.post(f"{BASE}/{other}/agents/{agent}/heartbeat", json={}).status_code == 404


def test_the_body_models_name_every_state() -> None:
    assert set(typing.get_args(StateBody.model_fields["state"].annotation)) == set(SWEEP_STATES)
    assert set(typing.get_args(FinishBody.model_fields["state"].annotation)) == set(
        ENDED_TRIAL_STATES
    )


def test_a_key_reaches_only_its_entitys_sweeps(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    alice, bob = store.create_key("alice"), store.create_key("bob")
    store.close()
    client = _client(tmp_path, require_auth=True)
    base = "/api/v1/entities/alice/projects/p/sweeps"
    made = client.post(base, json={"config": GRID}, headers={"Authorization": f"Bearer {alice}"})
    assert made.status_code == 200
    sweep_id = made.json()["id"]
    assert client.get(f"{base}/{sweep_id}").status_code == 401  # no key
    as_bob = {"Authorization": f"Bearer {bob}"}
    assert client.get(f"{base}/{sweep_id}", headers=as_bob).status_code == 403
    assert client.post(f"{base}/{sweep_id}/agents", json={}, headers=as_bob).status_code == 403
    as_alice = {"Authorization": f"Bearer {alice}"}
    assert client.get(f"{base}/{sweep_id}", headers=as_alice).json()["state"] == "running"
    # a write from a browser on another origin is refused before it reaches the sweep
    foreign = client.post(f"{base}/{sweep_id}/agents", json={},
                          headers={**as_alice, "Origin": "http://evil.test"})  # fmt: skip
    assert foreign.status_code == 403


def _run_on_server(client: TestClient, run_id: str, state: str | None, loss: float) -> None:
    w = LogWriter()
    w.run(run_id, project="p")
    w.history(0, {"loss": loss})
    if state is not None:
        w.record("exit", {"exit_code": 0, "state": state, "runtime": 1.0})
    answer = client.post(f"/api/v1/entities/local/projects/p/runs/{run_id}/records",
                         content=w.body())  # fmt: skip
    assert answer.status_code == 200, answer.text


class Clock:
    """The server's clock for its sweeps, moved by hand (no test waits for a timeout)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _with_clock(client: TestClient, clock: Clock) -> ServerSweeps:
    """The app's sweeps on ``clock`` (set before the first sweep request)."""
    res = client.app.state.resources  # type: ignore[attr-defined]
    res._sweeps = ServerSweeps(res.store, res.config.agent_timeout, clock)
    return res._sweeps  # type: ignore[no-any-return]


def test_a_dead_agents_trials_are_settled_from_their_runs_after_the_timeout(
    tmp_path: Path,
) -> None:
    clock = Clock()
    client = _client(tmp_path)
    _with_clock(client, clock)
    sweep_id = client.post(BASE, json={"config": GRID}).json()["id"]
    dead = client.post(f"{BASE}/{sweep_id}/agents", json={}).json()["id"]
    trials = [_claim(client, sweep_id, dead)["trial"] for _ in range(3)]
    # the first trial's run ended on its own; the second's never ended; the third never started
    _run_on_server(client, trials[0]["run_id"], "finished", 0.25)
    _run_on_server(client, trials[1]["run_id"], None, 9.0)
    clock.offset = 59.0  # within the timeout (60 s) of its last claim
    page = client.get(f"{BASE}/{sweep_id}").json()
    assert [t["state"] for t in page["trials"]] == ["running"] * 3
    alive = client.post(f"{BASE}/{sweep_id}/agents", json={}).json()["id"]
    kept = _claim(client, sweep_id, alive)["trial"]
    clock.offset = 100.0
    client.post(f"{BASE}/{sweep_id}/agents/{alive}/heartbeat", json={})  # this one beats
    clock.offset = 140.0  # 81 s without a word from the first agent, 40 s from the second
    page = client.get(f"{BASE}/{sweep_id}").json()
    # (a crashed run keeps the metric as it last logged it, as in the local controller)
    assert [(t["state"], t["value"]) for t in page["trials"]] == [
        ("finished", 0.25), ("crashed", 9.0), ("crashed", None), ("running", None)
    ]  # fmt: skip
    assert kept["number"] == 3
    assert [a["alive"] for a in page["agents"]] == [False, True]


def test_after_a_restart_agents_get_a_timeout_of_grace(tmp_path: Path) -> None:
    client = _client(tmp_path)
    sweep_id = client.post(BASE, json={"config": GRID}).json()["id"]
    agent = client.post(f"{BASE}/{sweep_id}/agents", json={}).json()["id"]
    _claim(client, sweep_id, agent)
    client.app.state.resources.store.close()  # type: ignore[attr-defined]  # the server stops
    clock = Clock()
    clock.offset = 300.0  # ... for 5 minutes: its agents could not beat meanwhile
    client = _client(tmp_path)  # ... and starts again on the same data
    _with_clock(client, clock)
    page = client.get(f"{BASE}/{sweep_id}").json()
    assert [t["state"] for t in page["trials"]] == ["running"]  # not settled: grace
    clock.offset += 61.0  # a timeout after the start: the agent really is gone
    page = client.get(f"{BASE}/{sweep_id}").json()
    assert [t["state"] for t in page["trials"]] == ["crashed"]


def test_prior_runs_join_as_ended_trials_and_only_usable_latents_are_kept(tmp_path: Path) -> None:
    client = _client(tmp_path)
    config = {"method": "bayes", "metric": {"name": "m"},
              "parameters": {"x": {"min": 0.0, "max": 1.0},
                             "k": {"values": [1, 2, 3]}}}  # fmt: skip
    priors = [
        {"run_id": "old1", "params": {"x": 0.1, "k": 2}, "value": 0.5,
         "latent": {"x": 0.1, "k": 1}},
        {"run_id": "old2", "params": {"x": 0.9, "k": 1}, "state": "failed",
         "latent": {"x": "not a number", "k": 0}},  # a client's bad values: not used
    ]  # fmt: skip
    sweep_id = client.post(BASE, json={"config": config, "prior_runs": priors}).json()["id"]
    trials = client.get(f"{BASE}/{sweep_id}").json()["trials"]
    assert [(t["run_id"], t["state"], t["value"], t["latent"]) for t in trials] == [
        ("old1", "finished", 0.5, {"x": 0.1, "k": 1}), ("old2", "failed", None, {})
    ]  # fmt: skip
    agent = client.post(f"{BASE}/{sweep_id}/agents", json={}).json()["id"]
    assert _claim(client, sweep_id, agent)["trial"]["number"] == 2  # bayes goes on after them
    bad = client.post(BASE, json={"config": config, "prior_runs": [{"run_id": "../x"}]})
    assert bad.status_code == 422
    assert "run id" in bad.json()["detail"]
