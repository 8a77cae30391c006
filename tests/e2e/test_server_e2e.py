"""The whole path against a real ``fulmen server`` process on loopback: online logging, offline +
``fulmen sync``, the server killed mid-run, the client killed mid-run, 20 writers at once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LOGGER = """
import os, sys, time
import fulmen.track as wandb
n, pause = int(sys.argv[1]), float(sys.argv[2])
run = wandb.init(project="e2e", id=sys.argv[3], config={"lr": 0.1})
with open(os.path.join(run.dir, "notes.txt"), "w") as f:
    f.write("notes of " + sys.argv[3])
run.save_file("notes.txt")
for i in range(n):
    run.log({"loss": 1.0 / (i + 1), "trainer/global_step": i * 2})
    if pause:
        time.sleep(pause)
print("logged", flush=True)
run.finish()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data: Path, *args: str) -> None:
        self.data = data
        self.args = args
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(self.port)]
        self.proc = subprocess.Popen([*cmd, "--data", str(self.data), *self.args])
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + "/api/v1" + path, timeout=30) as r:
            data: bytes = r.read()
            return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "server")
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.terminate()
        s.proc.wait(10)


def _env(tmp_path: Path, server: Server | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_"))}
    env.update(
        FULMEN_DIR=str(tmp_path / "client"),
        FULMEN_SETTINGS_FILE=str(tmp_path / "settings"),
        FULMEN_CONSOLE="off",
        FULMEN_STATS_INTERVAL="0",
        FULMEN_DISABLE_GIT="true",
        FULMEN_FINISH_TIMEOUT="30",
    )
    if server is not None:
        env["FULMEN_BASE_URL"] = server.url
    env.update(extra)
    return env


def _log(
    tmp_path: Path, server: Server | None, run_id: str, n: int, pause: float = 0.0, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LOGGER, str(n), str(pause), run_id],
        env=_env(tmp_path, server, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _rows(server: Server, run_id: str) -> list[dict[str, object]]:
    text = server.get(f"/entities/local/projects/e2e/runs/{run_id}/history/export?format=jsonl")
    return [json.loads(line) for line in text.decode().splitlines()]


def _sync(tmp_path: Path, server: Server, *paths: str) -> str:
    out = subprocess.run(  # noqa: PLW1510
        [sys.executable, "-m", "fulmen", "sync", *paths],
        env=_env(tmp_path, server),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_online_run_reads_back_exactly_what_was_logged(tmp_path: Path, server: Server) -> None:
    _log(tmp_path, server, "online1", 300)
    rows = _rows(server, "online1")
    assert [r["loss"] for r in rows] == [1.0 / (i + 1) for i in range(300)]
    assert [r["trainer/global_step"] for r in rows] == [i * 2 for i in range(300)]
    run = json.loads(server.get("/entities/local/projects/e2e/runs/online1"))
    assert run["state"] == "finished"
    assert run["config"] == {"lr": 0.1}
    assert run["summary"]["loss"] == 1.0 / 300
    files = json.loads(server.get("/entities/local/projects/e2e/runs/online1/files"))["files"]
    assert files  # the run's own files (metadata, requirements, ...), every one uploaded
    assert all(f["uploaded"] for f in files), files
    first = files[0]["path"]
    local = next((tmp_path / "client" / "fulmen").glob("run-*-online1")) / "files" / first
    assert server.get(f"/entities/local/projects/e2e/runs/online1/files/{first}") == (
        local.read_bytes()
    )
    chart = json.loads(
        server.get(
            "/entities/local/projects/e2e/history?run=online1&key=loss&buckets=10"
            "&x=trainer/global_step"
        )
    )["series"][0]
    assert sum(chart["count"]) == 300
    assert chart["max"][0] == 1.0
    assert chart["last"][-1] == 1.0 / 300

    from fulmen.track import Api

    listed = Api(base_url=server.url).runs("local/e2e", {"config.lr": 0.1, "state": "finished"})
    assert [r.id for r in listed] == ["online1"]
    assert Api(base_url=server.url).runs("e2e", {"config.lr": 0.2}) == []
    assert Api(base_url=server.url).run("online1").path == "local/e2e/online1"
    remote = Api(base_url=server.url).run("local/e2e/online1")
    assert remote.state == "finished"
    assert remote.config == {"lr": 0.1}
    assert [r["loss"] for r in remote.scan_history(["loss"])] == [r["loss"] for r in rows]


def test_offline_then_sync_twice_gives_one_copy(tmp_path: Path, server: Server) -> None:
    _log(tmp_path, None, "offline1", 500, FULMEN_MODE="offline")
    _sync(tmp_path, server)
    first = json.loads(server.get("/entities/local/projects/e2e/runs/offline1"))
    rows = _rows(server, "offline1")
    assert "nothing to sync" in _sync(tmp_path, server)
    _sync(tmp_path, server, str(tmp_path / "client" / "fulmen"))  # forced: resent, ignored
    again = json.loads(server.get("/entities/local/projects/e2e/runs/offline1"))
    assert _rows(server, "offline1") == rows
    assert len(rows) == 500
    assert {k: v for k, v in again.items() if k != "updated"} == {
        k: v for k, v in first.items() if k != "updated"
    }


def test_server_killed_mid_run_loses_nothing(tmp_path: Path, server: Server) -> None:
    client = subprocess.Popen(
        [sys.executable, "-c", LOGGER, "400", "0.005", "outage1"],
        env=_env(tmp_path, server, FULMEN_FINISH_TIMEOUT="60"),
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    server.kill()
    time.sleep(1.0)
    server.start()
    assert client.wait(120) == 0
    rows = _rows(server, "outage1")
    assert [r["_step"] for r in rows] == list(range(400))
    assert json.loads(server.get("/entities/local/projects/e2e/runs/outage1"))["rows"] == 400


def test_client_killed_mid_run_is_completed_by_sync_and_crashed(
    tmp_path: Path, server: Server
) -> None:
    client = subprocess.Popen(
        [sys.executable, "-c", LOGGER, "100000", "0.001", "killed1"],
        env=_env(tmp_path, server),
    )
    time.sleep(2.0)
    client.send_signal(signal.SIGKILL)
    client.wait()
    _sync(tmp_path, server)
    run = json.loads(server.get("/entities/local/projects/e2e/runs/killed1"))
    assert run["state"] == "crashed"
    rows = _rows(server, "killed1")
    assert len(rows) > 0
    assert [r["_step"] for r in rows] == list(range(len(rows)))
    # every row on the client's disk is on the server
    from fulmen.track import Api

    local = Api(dir=str(tmp_path / "client")).run("killed1")
    assert local.rows == len(rows)
    assert "nothing to sync" in _sync(tmp_path, server)  # the marker covers the whole file


def test_twenty_writers_at_once(tmp_path: Path, server: Server) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOGGER, "200", "0.002", f"many{i}"],
            env=_env(tmp_path / f"c{i}", server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(20)
    ]
    for p in procs:
        out, err = p.communicate(timeout=240)  # noqa: RUF059
        assert p.returncode == 0, err
        assert "locked" not in err
        assert "sync" not in err
    page = json.loads(server.get("/entities/local/projects/e2e/runs?limit=100"))
    assert page["total"] == 20
    assert all(r["rows"] == 200 and r["state"] == "finished" for r in page["runs"])


def test_anonymous_run_on_a_server_that_requires_keys(tmp_path: Path) -> None:
    server = Server(tmp_path / "server", "--host", "0.0.0.0", "--allow-anonymous")
    server.start()
    try:
        out = _log(tmp_path, server, "anon1", 20, FULMEN_ANONYMOUS="true")
        link = next(line for line in out.stderr.splitlines() if "anonymous run" in line)
        url = link.split("link): ", 1)[1]
        with urllib.request.urlopen(url, timeout=10) as r:
            run = json.loads(r.read())
        assert run["state"] == "finished"
        assert run["rows"] == 20
        with pytest.raises(urllib.error.HTTPError) as refused:
            server.get("/entities")
        assert refused.value.code == 401
        refused.value.close()
    finally:
        assert server.proc is not None
        server.proc.terminate()
        server.proc.wait(10)


ARTIFACT = """
import sys
from pathlib import Path
import fulmen.track as wandb
run = wandb.init(project="e2e", id=sys.argv[1])
weights = Path(sys.argv[2])
weights.write_bytes(b"weights " * 1000)
run.log_artifact(str(weights), name="model-" + run.id, type="model", aliases=["best"])
run.finish()
"""


def test_artifacts_reach_the_server_with_only_missing_blobs(tmp_path: Path, server: Server) -> None:
    inodes = []
    for run_id in ("art1", "art2"):  # the second run logs the same bytes: not sent again
        subprocess.run(
            [sys.executable, "-c", ARTIFACT, run_id, str(tmp_path / "w.bin")],
            env=_env(tmp_path, server),
            check=True,
            timeout=120,
        )
        base = f"/entities/local/projects/e2e/artifacts/model-{run_id}"
        version = json.loads(server.get(f"{base}/best"))
        assert version["aliases"] == ["best", "latest"]
        assert server.get(f"{base}/v0/files/w.bin") == b"weights " * 1000
        # Run files (requirements.txt, ...) are blobs too; follow the artifact's own blob.
        digest = hashlib.sha256(b"weights " * 1000).hexdigest()
        blobs = [p for p in (server.data / "blobs").rglob(f"*{digest}*") if p.is_file()]
        assert len(blobs) == 1
        inodes.append(blobs[0].stat().st_ino)
    assert inodes[1] == inodes[0]  # an upload would have replaced the file (a new inode)
    from fulmen.track import Api

    remote = Api(base_url=server.url).artifact("e2e/model-art2:best")
    assert (remote.version, remote.type) == ("v0", "model")
    folder = Path(remote.download(str(tmp_path / "dl")))
    assert (folder / "w.bin").read_bytes() == b"weights " * 1000
    assert remote.get_path("w.bin").size == 8000


def test_sync_with_keys_on_a_server_that_requires_them(tmp_path: Path) -> None:
    server = Server(tmp_path / "server", "--host", "0.0.0.0")
    server.start()
    try:
        command = [sys.executable, "-m", "fulmen", "server", "--data", str(server.data)]
        made = subprocess.run(
            [*command, "create-key", "--entity", "alice"],
            capture_output=True,
            text=True,
            check=True,
        )
        key = made.stdout.strip()
        _log(tmp_path, None, "keyed1", 30, FULMEN_MODE="offline")
        sync = [sys.executable, "-m", "fulmen", "sync", "--host", server.url]
        env = _env(tmp_path, None)
        wrong = subprocess.run(
            [*sync, "--key", "nope"], env=env, capture_output=True, text=True, check=False
        )
        assert wrong.returncode == 1
        assert "401" in wrong.stdout
        right = subprocess.run(
            [*sync, "--key", key], env=env, capture_output=True, text=True, check=False
        )
        assert right.returncode == 0, right.stdout + right.stderr
        request = urllib.request.Request(
            server.url + "/api/v1/entities/alice/projects/e2e/runs/keyed1",
            headers={"Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert json.loads(r.read())["rows"] == 30
    finally:
        assert server.proc is not None
        server.proc.terminate()
        server.proc.wait(10)


HANGING = """
import sys, time
import fulmen.track as wandb
run = wandb.init(project="e2e", id="hang1")
start = time.perf_counter()
for i in range(2000):
    run.log({"loss": float(i)})
print("log_s", time.perf_counter() - start, flush=True)
start = time.perf_counter()
run.finish()
print("finish_s", time.perf_counter() - start, flush=True)
"""


def test_a_hanging_server_slows_neither_log_nor_finish(tmp_path: Path) -> None:
    # a server that accepts connections and never answers: the worst outage for a client
    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(100)
        url = f"http://127.0.0.1:{hang.getsockname()[1]}"
        out = subprocess.run(
            [sys.executable, "-c", HANGING],
            env=_env(tmp_path, None, FULMEN_BASE_URL=url, FULMEN_FINISH_TIMEOUT="1"),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    times = dict(line.split() for line in out.stdout.splitlines())
    assert float(times["log_s"]) < 1.0  # 2,000 rows; a blocking upload would take 30 s each
    assert float(times["finish_s"]) < 5.0  # the bounded wait, then the sync command
    assert "fulmen sync" in out.stderr


def test_sync_reads_past_a_frame_bigger_than_its_read_size(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulmen.track import _upload
    from tests.server.runlogs import LogWriter

    monkeypatch.setattr(_upload, "READ_BYTES", 1000)
    run_dir = tmp_path / "fulmen" / "run-20260101_000000-big1"
    w = LogWriter(run_dir / "run-big1.fulmen")
    w.run("big1", project="e2e")
    w.record("config", {"blob": "x" * 5000})  # one frame of 5 kB
    for i in range(100):
        w.history(i, {"v": float(i)})
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 1.0})
    upload = _upload.sync_run(run_dir, _upload.Client(server.url), live=False)
    assert upload.held == w.seq
    assert len(_rows(server, "big1")) == 100
    run = json.loads(server.get("/entities/local/projects/e2e/runs/big1"))
    assert len(run["config"]["blob"]) == 5000


def test_one_server_per_data_folder(tmp_path: Path, server: Server) -> None:
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "fulmen",
            "server",
            "--port",
            str(_free_port()),
            "--data",
            str(server.data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert "another fulmen server" in second.stderr


def test_sync_of_a_live_offline_run_then_of_the_finished_run(
    tmp_path: Path, server: Server
) -> None:
    client = subprocess.Popen(
        [sys.executable, "-c", LOGGER, "300", "0.01", "live1"],
        env=_env(tmp_path, None, FULMEN_MODE="offline"),
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    out = _sync(tmp_path, server)
    assert "still running" in out
    run = json.loads(server.get("/entities/local/projects/e2e/runs/live1"))
    assert run["state"] == "running"
    assert 0 < run["rows"] < 300
    run_dir = next((tmp_path / "client" / "fulmen").glob("run-*-live1"))
    assert not (run_dir / ".synced").exists()  # not everything is there yet
    assert client.wait(120) == 0
    _sync(tmp_path, server)
    run = json.loads(server.get("/entities/local/projects/e2e/runs/live1"))
    assert (run["state"], run["rows"]) == ("finished", 300)
    assert (run_dir / ".synced").exists()


def test_the_uploader_sends_heartbeats_while_the_run_is_quiet(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulmen.track import _upload
    from tests.server.runlogs import LogWriter

    monkeypatch.setattr(_upload, "HEARTBEAT_S", 0.3)
    run_dir = tmp_path / "fulmen" / "run-20260101_000000-quiet1"
    w = LogWriter(run_dir / "run-quiet1.fulmen")
    w.run("quiet1", project="e2e")
    uploader = _upload.Uploader(_upload.RunUpload(run_dir, _upload.Client(server.url)), poll=0.1)
    uploader.start()
    try:
        deadline = time.time() + 10
        url = "/entities/local/projects/e2e/runs/quiet1"
        while time.time() < deadline:
            try:
                first = json.loads(server.get(url))["updated"]
                break
            except urllib.error.HTTPError as exc:
                exc.close()
                time.sleep(0.1)
        time.sleep(1.0)  # nothing new to send: heartbeats only
        assert json.loads(server.get(url))["updated"] > first
    finally:
        uploader.finish(0)
