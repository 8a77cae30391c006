"""``Api(base_url=...)`` (``fulmen.track._http``): the read API over a real fulmen server.

Runs are logged here offline, uploaded with the sync path, and read back through HTTP: listing
and filters, finding a run by id alone, its properties, history, artifacts and their download.
The server is ``fulmen server`` in a subprocess on loopback, one for the module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fulmen import track
from fulmen.track import Api, Artifact
from fulmen.track._http import HttpApi, HttpRun
from fulmen.track._upload import Client, sync_run

from .conftest import run_child

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    data = tmp_path_factory.mktemp("server")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "server", "--port", str(port), "--data", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/api/v1/health", timeout=1):
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _logged(url: str, run_id: str, project: str, rows: int = 5, **init: object) -> Path:
    """A run logged offline here and uploaded to the server: its folder."""
    run = track.init(id=run_id, project=project, mode="offline", **init)  # type: ignore[arg-type]
    for i in range(rows):
        run.log({"loss": 1.0 / (i + 1), "acc": i / 10})
    run.finish()
    sync_run(run.run_dir, Client(url), live=False)
    return run.run_dir


def test_runs_are_listed_oldest_first_and_filtered(server_url: str) -> None:
    _logged(server_url, "list1", "listing", config={"lr": 0.1}, group="g1", tags=["a"])
    _logged(server_url, "list2", "listing", config={"lr": 0.2}, group="g2", tags=["b"])
    api = Api(base_url=server_url)
    assert isinstance(api, HttpApi)
    assert [r.id for r in api.runs("listing")] == ["list1", "list2"]
    assert [r.id for r in api.runs("local/listing")] == ["list1", "list2"]
    assert [r.id for r in api.runs("listing", {"config.lr": 0.2})] == ["list2"]
    assert [r.id for r in api.runs("listing", {"group": "g1"})] == ["list1"]
    assert [r.id for r in api.runs("listing", {"tags": "b"})] == ["list2"]
    assert [r.id for r in api.runs("listing", {"state": "finished"})] == ["list1", "list2"]
    assert api.runs("listing", {"state": "running"}) == []
    with pytest.raises(ValueError, match="unknown filter 'colour'"):
        api.runs("listing", {"colour": "red"})


def test_a_run_is_found_by_id_alone_or_by_its_path(server_url: str) -> None:
    _logged(server_url, "find1", "elsewhere", config={"lr": 0.5}, tags=["t"], name="nice")
    api = Api(base_url=server_url)
    for path in ("find1", "elsewhere/find1", "local/elsewhere/find1"):
        run = api.run(path)
        assert isinstance(run, HttpRun)
        assert run.path == "local/elsewhere/find1"
    assert (run.name, run.state, run.config, run.tags) == ("nice", "finished", {"lr": 0.5}, ["t"])
    assert run.summary["loss"] == pytest.approx(1 / 5)
    assert isinstance(run.created_at, float)
    with pytest.raises(ValueError, match="no run 'nope' on the server for entity 'local'"):
        api.run("nope")
    with pytest.raises(AttributeError):
        _ = run.no_such_property


def test_history_is_every_row_or_an_even_sample(server_url: str) -> None:
    _logged(server_url, "hist1", "history", rows=20)
    run = Api(base_url=server_url).run("history/hist1")
    rows = list(run.scan_history())
    assert [r["_step"] for r in rows] == list(range(20))
    assert [r["loss"] for r in rows] == [1.0 / (i + 1) for i in range(20)]
    only = list(run.scan_history(["acc"]))
    assert only[3] == {"_step": 3, "acc": 0.3}
    sampled = run.history(samples=5)
    assert [r["_step"] for r in sampled] == [0, 5, 10, 14, 19]  # the ends and evenly between
    assert len(run.history()) == 20


def test_an_artifact_downloads_checked_against_its_digests(server_url: str, tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights " * 1000)
    run = track.init(id="art1", project="arts", mode="offline")
    artifact = Artifact("model-art1", "model")
    artifact.add_file(str(weights))
    run.log_artifact(artifact, aliases=["best"])
    run.finish()
    sync_run(run.run_dir, Client(server_url), live=False)

    remote = Api(base_url=server_url).artifact("arts/model-art1:best")
    assert (remote.name, remote.version, remote.type) == ("model-art1", "v0", "model")
    assert remote.get_path("w.bin").size == 8000
    assert isinstance(remote.get_path("w.bin"), track.ArtifactEntry)  # one entry type, either side
    with pytest.raises(KeyError, match=r"has no file 'nope\.bin'"):
        remote.get_path("nope.bin")
    folder = Path(remote.download(str(tmp_path / "dl")))
    copy = folder / "w.bin"
    assert copy.read_bytes() == b"weights " * 1000
    inode = copy.stat().st_ino
    remote.download(str(tmp_path / "dl"))  # current (same digest): not fetched again
    assert copy.stat().st_ino == inode
    copy.write_bytes(b"changed")  # a stale local copy is replaced by the server's
    remote.get_path("w.bin").download(str(tmp_path / "dl"))
    assert copy.read_bytes() == b"weights " * 1000


def test_a_run_with_a_lone_surrogate_and_a_big_int_syncs_completely(server_url: str) -> None:
    # Issue 18: a lone surrogate (os.fsdecode of a non-UTF-8 file name) in row 5,000 made the
    # server refuse the batch; the uploader gave up and half the run never arrived.
    bad = os.fsdecode(b"img_\xff.png")
    run = track.init(id="sur1", project="hostile", mode="offline", config={"file": bad})
    for i in range(10_000):
        extra = {"sample": bad, "u64": 2**64 - 1} if i == 5_000 else {}
        run.log({"x": float(i), **extra})
    run.finish()
    sync_run(run.run_dir, Client(server_url), live=False)
    remote = Api(base_url=server_url).run("hostile/sur1")
    assert remote.state == "finished"
    assert remote.rows == 10_000
    rows = list(remote.scan_history())
    assert [r["x"] for r in rows] == [float(i) for i in range(10_000)]
    # the server holds valid Unicode: the undecodable byte as the escape \xff
    assert rows[5_000]["sample"] == "img_\\xff.png"
    assert rows[5_000]["u64"] == 2**64 - 1
    assert remote.config["file"] == "img_\\xff.png"
    assert remote.summary["sample"] == "img_\\xff.png"
    csv = Client(server_url).request(
        "GET", "/entities/local/projects/hostile/runs/sur1/history/export", query={"format": "csv"}
    )
    assert csv.count(b"\n") == 10_001
    assert b"img_\\xff.png" in csv
    local = Api().run("sur1")  # the run log keeps the string as given
    assert local.summary["sample"] == bad


def test_the_online_uploader_sends_such_a_run_completely(server_url: str, tmp_path: Path) -> None:
    # The live path: a real program in online mode, its uploader thread tailing the run log.
    code = """
        import os
        from fulmen import track
        bad = os.fsdecode(b"img_\\xff.png")
        run = track.init(id="sur2", project="hostile", config={"file": bad})
        for i in range(10_000):
            run.log({"x": float(i), **({"sample": bad} if i == 5_000 else {})})
        run.finish()
    """
    done = run_child(code, tmp_path, FULMEN_MODE="online", FULMEN_BASE_URL=server_url)
    assert done.returncode == 0, done.stderr
    remote = Api(base_url=server_url).run("hostile/sur2")
    assert remote.state == "finished"
    assert remote.rows == 10_000
    rows = list(remote.scan_history())
    assert len(rows) == 10_000
    assert rows[5_000]["sample"] == "img_\\xff.png"
    assert rows[-1]["x"] == 9_999.0
