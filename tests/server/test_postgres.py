"""The PostgreSQL engine (``fulmen.server._postgres``) where several writers meet: two stores (as
two server processes have) ingesting one run at once, logging one artifact at once; the database
restarted under a store; and real processes: two ``fulmen server`` processes on one database and
one S3 object store (moto's server) with clients logging rows, a file and an artifact to both, one
server killed -9 and restarted mid-way; PostgreSQL restarted while clients log. What every
engine does is in test_sqlstore.py."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fulmen.server._postgres import PostgresStore
from fulmen.server.store import HistoryQuery, StoreUnavailable
from tests.server.postgres import Cluster, cluster
from tests.server.runlogs import LogWriter
from tests.server.s3 import BUCKET, MotoServer

CLIENTS, ROWS = 50, 10_000  # the load (about 40 s); FULMEN_QUICK_LOAD=1: 10 x 2,000
if os.environ.get("FULMEN_QUICK_LOAD"):
    CLIENTS, ROWS = 10, 2_000


def _run(run_id: str, rows: int) -> LogWriter:
    w = LogWriter()
    w.run(run_id)
    w.record("config", {"lr": 0.1})
    for i in range(rows):
        w.history(i, {"loss": 1.0 / (i + 1), "acc": i * 0.001})
    w.record("artifact", {"name": "model", "type": "model", "digest": f"d-{run_id}"})
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 1.0})
    return w


def _state(store: Any, run_id: str) -> tuple[object, ...]:
    run = {k: v for k, v in store.run("local", "proj", run_id).items() if k != "updated"}
    [chart] = store.history("local", "proj", HistoryQuery((run_id,), ("loss",), buckets=50))
    export = b"".join(store.frames("local", "proj", run_id))
    return run, chart["last"].tolist(), chart["count"].tolist(), export


def test_two_stores_ingesting_one_run_at_once_store_it_once(pg_cluster: Cluster) -> None:
    url = pg_cluster.create_database()
    w = _run("r1", 600)
    frames = w.frames
    one, two = PostgresStore(url), PostgresStore(url)  # two processes' worth of connections
    alone = PostgresStore(pg_cluster.create_database())
    alone.ingest("local", "proj", "r1", w.body())
    rng = random.Random(7)
    errors: list[BaseException] = []

    def send(store: Any) -> None:  # overlapping ranges, as a client resending after a timeout
        try:
            while (held := store.held("local", "proj", "r1")) < len(frames):
                start = max(0, held - rng.randrange(0, 50))
                store.ingest("local", "proj", "r1", b"".join(frames[start : start + 80]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(s,)) for s in (one, two, one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert one.held("local", "proj", "r1") == len(frames)
    assert _state(one, "r1")[1:] == _state(alone, "r1")[1:]
    assert {**_state(one, "r1")[0], "created": 0} == {**_state(alone, "r1")[0], "created": 0}
    for s in (one, two, alone):
        s.close()


def test_two_stores_logging_one_artifact_at_once_number_its_versions_once(
    pg_cluster: Cluster,
) -> None:
    url = pg_cluster.create_database()
    stores = [PostgresStore(url) for _ in range(2)]
    barrier = threading.Barrier(8)

    def log(i: int) -> None:
        w = LogWriter()
        w.run(f"r{i}")
        w.record("artifact", {"name": "data", "type": "dataset", "digest": f"d{i % 4}"})
        barrier.wait()
        stores[i % 2].ingest("local", "proj", f"r{i}", w.body())

    threads = [threading.Thread(target=log, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = stores[0].artifact_versions("local", "proj", "data")
    assert sorted(v["version"] for v in versions) == ["v0", "v1", "v2", "v3"]  # 4 digests
    assert sorted(v["digest"] for v in versions) == ["d0", "d1", "d2", "d3"]
    for s in stores:
        s.close()


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    """A cluster of this module's own, to restart without disturbing the session's."""
    with cluster() as made:
        yield made


def test_a_store_rejoins_a_restarted_database_on_its_own(
    own_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulmen.server import _postgres

    monkeypatch.setattr(_postgres, "POOL_TIMEOUT", 1.0)  # how long a request waits, then 503
    url = own_cluster.create_database()
    store = PostgresStore(url, pool_size=2)
    w = _run("r1", 10)
    store.ingest("local", "proj", "r1", b"".join(w.frames[:5]))
    own_cluster.stop()
    with pytest.raises(StoreUnavailable, match="the database postgresql://"):
        store.ingest("local", "proj", "r1", w.body())  # a 503 for the client: it retries
    own_cluster.start()
    deadline = time.monotonic() + 60
    while True:  # as the uploader does: retried until the pool has reconnected (its backoff)
        try:
            held = store.ingest("local", "proj", "r1", w.body())  # the same store object
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert held == w.seq
    assert store.run("local", "proj", "r1")["rows"] == 10
    store.close()


# --- real processes ---------------------------------------------------------------------------

LOGGER = """
import os, sys, time
import fulmen.track as wandb
run_id, rows, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
run = wandb.init(project="load", id=run_id)
with open(os.path.join(run.dir, "notes.txt"), "w") as f:
    f.write("notes of " + run_id)
run.save_file("notes.txt")
weights = os.path.join(run.dir, "..", "weights.bin")
with open(weights, "w") as f:
    f.write(("weights of " + run_id) * 1000)
art = wandb.Artifact("model", type="model")  # one name for all: versions numbered under load
art.add_file(weights)
run.log_artifact(art)
for i in range(rows):
    run.log({"loss": 1.0 / (i + 1), "i": i})
    if i % 100 == 99:
        time.sleep(pause)
run.finish()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``fulmen server`` process on the database ``url`` (its port kept across restarts),
    its blobs in ``data``'s folder or, with ``blobs`` (the ``--blobs`` URL and the AWS settings),
    an object store."""

    def __init__(
        self, data: Path, url: str, blobs: tuple[str, dict[str, str]] | None = None
    ) -> None:
        self.data, self.db, self.blobs = data, url, blobs
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(self.port)]
        cmd += ["--data", str(self.data), "--database", self.db]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "AWS_"))}
        if self.blobs is not None:
            cmd += ["--blobs", self.blobs[0]]
            env.update(self.blobs[1])
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the server exited"
            try:
                with urllib.request.urlopen(self.base + "/api/v1/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.base}/api/v1/entities/local/projects/load{path}",
                                    timeout=60) as r:  # fmt: skip
            data: bytes = r.read()
            return data


def _client(tmp_path: Path, server: Server, run_id: str, pause: float) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_"))}
    env.update(
        FULMEN_DIR=str(tmp_path / "clients" / run_id),
        FULMEN_SETTINGS_FILE=str(tmp_path / "settings"),
        FULMEN_BASE_URL=server.base,
        FULMEN_CONSOLE="off",
        FULMEN_STATS_INTERVAL="0",
        FULMEN_DISABLE_GIT="true",
        FULMEN_FINISH_TIMEOUT="120",
    )
    return subprocess.Popen(
        [sys.executable, "-c", LOGGER, run_id, str(ROWS), str(pause)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _check_every_row_once(servers: list[Server], run_ids: list[str]) -> None:
    for server in servers:  # each server answers for every run, whichever took its records
        for run_id in run_ids:
            export = server.get(f"/runs/{run_id}/history/export?format=jsonl")
            rows = [json.loads(line) for line in export.splitlines()]
            assert [r["i"] for r in rows] == list(range(ROWS)), (server.base, run_id)
            run = json.loads(server.get(f"/runs/{run_id}"))
            assert (run["state"], run["rows"]) == ("finished", ROWS)
            assert server.get(f"/runs/{run_id}/files/notes.txt") == f"notes of {run_id}".encode()
            (art,) = json.loads(server.get(f"/runs/{run_id}/artifacts"))["artifacts"]
            weights = server.get(f"/artifacts/model/{art['version']}/files/weights.bin")
            assert weights == f"weights of {run_id}".encode() * 1000
        # each run's artifact is one version of "model", numbered once: v0 .. v(n-1)
        versions = json.loads(server.get("/artifacts/model"))["versions"]
        assert sorted(v["run"] for v in versions) == sorted(run_ids)
        assert sorted(int(v["version"][1:]) for v in versions) == list(range(len(run_ids)))


def _wait_for_rows(server: Server, rows: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        runs = json.loads(server.get("/runs?limit=1000"))["runs"]
        if sum(r["rows"] for r in runs) >= rows:
            return
        assert time.monotonic() < deadline, runs
        time.sleep(0.1)


def _wait(clients: list[subprocess.Popen[str]]) -> None:
    for c in clients:
        out, _ = c.communicate(timeout=300)
        assert c.returncode == 0, out


@pytest.mark.slow
def test_two_servers_one_killed_and_restarted_mid_way_keep_every_row_once(
    pg_cluster: Cluster, moto: MotoServer, tmp_path: Path
) -> None:
    url = pg_cluster.create_database()
    blobs = (f"s3://{BUCKET}/{tmp_path.name}", moto.env())  # one object store, each its own folder
    servers = [Server(tmp_path / f"data{i}", url, blobs) for i in range(2)]
    for s in servers:
        s.start()
    try:
        run_ids = [f"c{i}" for i in range(CLIENTS)]
        clients = [_client(tmp_path, servers[i % 2], r, 0.05) for i, r in enumerate(run_ids)]
        _wait_for_rows(servers[0], CLIENTS * ROWS // 4)  # mid-way: a quarter of the rows in
        servers[0].kill()
        time.sleep(1.0)  # its clients' uploads fail meanwhile, and are retried
        servers[0].start()
        _wait(clients)
        _check_every_row_once(servers, run_ids)
        stored = set(moto.keys(tmp_path.name))  # the blobs are in the object store, by digest
        for run_id in run_ids:
            digest = hashlib.sha256(f"weights of {run_id}".encode() * 1000).hexdigest()
            assert f"{tmp_path.name}/{digest[:2]}/{digest}" in stored
        # a whole run log sent again, to the other server: nothing changes
        before = servers[1].get("/runs/c0/history/export?format=jsonl")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_"))}
        env.update(FULMEN_SETTINGS_FILE=str(tmp_path / "settings"), FULMEN_BASE_URL=servers[1].base)
        folder = next((tmp_path / "clients" / "c0").glob("fulmen/run-*-c0"))
        (folder / ".synced").unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-m", "fulmen", "sync", str(folder)], env=env,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert servers[1].get("/runs/c0/history/export?format=jsonl") == before
    finally:
        for s in servers:
            s.stop()


@pytest.mark.slow
def test_postgresql_restarted_while_clients_log_loses_nothing(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    url = own_cluster.create_database()
    server = Server(tmp_path / "data", url)
    server.start()
    try:
        run_ids = [f"c{i}" for i in range(4)]
        clients = [_client(tmp_path, server, r, 0.1) for r in run_ids]
        _wait_for_rows(server, 4 * ROWS // 4)
        own_cluster.stop()
        time.sleep(2.0)  # the clients' uploads are answered 503 meanwhile, and retried
        own_cluster.start()
        _wait(clients)
        assert server.proc is not None
        assert server.proc.poll() is None  # never restarted
        _check_every_row_once([server], run_ids)
    finally:
        server.stop()


AGENT = """
import sys, time, fulmen.track as wandb
def train():
    run = wandb.init()
    time.sleep(0.05)
    wandb.log({"loss": float(run.config.b)})
assert wandb.agent(sys.argv[1], function=train, count=4) == 4
"""


def _post(server: Server, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{server.base}/api/v1/entities/local/projects/load{path}", json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Fulmen-Client": "test"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_agents_on_two_servers_share_one_sweep_each_grid_point_once(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """The sweep's state lives in the database: agents asking two processes for trials at once
    get every grid point once, and both processes answer the same sweep."""
    url = pg_cluster.create_database()
    servers = [Server(tmp_path / f"data{i}", url) for i in range(2)]
    for s in servers:
        s.start()
    try:
        grid = {"method": "grid", "metric": {"name": "loss"},
                "parameters": {"b": {"values": list(range(16))}}}  # fmt: skip
        created = _post(servers[0], "/sweeps", {"config": grid})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_"))}
        env.update(FULMEN_CONSOLE="off", FULMEN_STATS_INTERVAL="0", FULMEN_DISABLE_GIT="true")
        agents = []
        for i in range(4):  # two agents on each server
            here = tmp_path / f"agent{i}"
            here.mkdir()
            env_i = {**env, "FULMEN_BASE_URL": servers[i % 2].base, "FULMEN_DIR": str(here),
                     "FULMEN_SETTINGS_FILE": str(tmp_path / "settings")}  # fmt: skip
            agents.append(subprocess.Popen(
                [sys.executable, "-c", AGENT, created["path"]], cwd=here, env=env_i,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))  # fmt: skip
        _wait(agents)
        answers = [json.loads(s.get(f"/sweeps/{created['id']}")) for s in servers]
        for sweep in answers:
            trials = sweep["trials"]
            assert sorted(t["params"]["b"] for t in trials) == list(range(16))  # each once
            assert {t["state"] for t in trials} == {"finished"}
            assert sweep["state"] == "finished"
            assert sweep["best"]["value"] == 0.0
        assert answers[0]["trials"] == answers[1]["trials"]
        # four trials an agent (count=4), two agents on each server
        by_agent = collections.Counter(t["agent"] for t in answers[0]["trials"])
        assert sorted(by_agent.values()) == [4, 4, 4, 4]
        assert set(by_agent) == {a["id"] for a in answers[0]["agents"]}
        for t in answers[0]["trials"]:  # each trial's run, logged to either, is on both
            for s in servers:
                run = json.loads(s.get(f"/runs/{t['run_id']}"))
                assert run["summary"]["loss"] == float(t["params"]["b"])
    finally:
        for s in servers:
            s.stop()
