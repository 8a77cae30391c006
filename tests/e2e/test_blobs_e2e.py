"""Blobs on an S3-compatible object store, end to end (issue 17): a real ``fulmen server --blobs
s3://...`` process on loopback, moto's S3 server in another, the tracker client in a third.

- The object store down while a run uploads its file and its artifact: the server answers 503,
  the client retries with backoff, and once the store is back both arrive and read back
  byte-exact; nothing incomplete is left in the bucket.
- A large file through the server, up and down, on both blob stores, with the server's peak
  memory (``VmHWM``) bounded well below the file's size: uploads and downloads stream.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.optional import require
from tests.server.s3 import BUCKET, MotoServer, free_port

pytestmark = pytest.mark.slow

CLIENT = """
import os, sys
import fulmen.track as wandb
run = wandb.init(project="blobs", id="outage")
with open(os.path.join(run.dir, "notes.txt"), "w") as f:
    f.write("notes written while the object store was down")
run.save_file("notes.txt")
weights = os.path.join(run.dir, "..", "weights.bin")
with open(weights, "wb") as f:
    f.write(bytes(range(256)) * 4096)
art = wandb.Artifact("model", type="model")
art.add_file(weights)
run.log_artifact(art)
for i in range(100):
    run.log({"loss": 1.0 / (i + 1)})
run.finish()
print("finished", flush=True)
"""


class Server:
    """``fulmen server`` in a subprocess with ``env`` on a free loopback port."""

    def __init__(self, data: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / "server.log"
        cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--data", str(data), *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no server: {self.log.read_text()[-3000:]}") from None
                time.sleep(0.1)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + "/api/v1" + path, timeout=60) as r:
            data: bytes = r.read()
            return data

    def peak_rss(self) -> int:
        """The process's peak resident memory so far, bytes (``VmHWM``)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_", "AWS_"))}
    env.update(extra)
    return env


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    require("moto.server")
    server = MotoServer(tmp_path / "moto.log")
    server.start()
    yield server
    server.stop()


def test_uploads_during_an_object_store_outage_retry_and_arrive_whole(
    tmp_path: Path, moto: MotoServer
) -> None:
    server = Server(tmp_path / "server", clean_env(**moto.env()), "--blobs", f"s3://{BUCKET}/e2e")
    try:
        moto.kill()
        client_log = tmp_path / "client.log"
        env = clean_env(
            FULMEN_BASE_URL=server.url,
            FULMEN_DIR=str(tmp_path / "client"),
            FULMEN_SETTINGS_FILE=str(tmp_path / "settings"),
            FULMEN_CONSOLE="off",
            FULMEN_STATS_INTERVAL="0",
            FULMEN_DISABLE_GIT="true",
            FULMEN_FINISH_TIMEOUT="120",
            FULMEN_LOG_LEVEL="warning",  # the uploader's retries, on stderr
        )
        with client_log.open("wb") as out:
            client = subprocess.Popen(
                [sys.executable, "-c", CLIENT], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90
        while (
            b"HTTP 503 the object store" not in client_log.read_bytes()
        ):  # a blob upload was refused: the outage
            assert client.poll() is None, client_log.read_text()
            assert time.monotonic() < deadline, client_log.read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # and it lasts a while (the client backs off and retries meanwhile)
        moto.start()  # back, empty (moto keeps objects in memory), on the same port
        assert client.wait(150) == 0, client_log.read_text()
        assert b"finished" in client_log.read_bytes()

        base = "/entities/local/projects/blobs"
        notes = server.get(f"{base}/runs/outage/files/notes.txt")
        assert notes == b"notes written while the object store was down"
        files = json.loads(server.get(f"{base}/runs/outage/files"))["files"]
        assert all(f["uploaded"] for f in files), files
        weights = server.get(f"{base}/artifacts/model/latest/files/weights.bin")
        assert weights == bytes(range(256)) * 4096
        keys = moto.keys("e2e")
        digest = hashlib.sha256(notes).hexdigest()
        assert f"e2e/{digest[:2]}/{digest}" in keys
        assert all(k.rsplit("/", 1)[-1] == _digest_of(moto, k) for k in keys)  # nothing torn
        assert moto.uploads("e2e") == []
        rows = server.get(f"{base}/runs/outage/history/export?format=jsonl").splitlines()
        assert len(rows) == 100
    finally:
        server.stop()


def _digest_of(moto: MotoServer, key: str) -> str:
    body = moto.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return hashlib.sha256(body).hexdigest()


BIG_MIB = 160
WARM_MIB = 24


def _chunks(mib: int, seed: int) -> Iterator[bytes]:
    block = hashlib.sha256(str(seed).encode()).digest() * ((1 << 20) // 32)
    for i in range(mib):
        yield i.to_bytes(4, "big") + block[4:]


def _digest(mib: int, seed: int) -> str:
    h = hashlib.sha256()
    for chunk in _chunks(mib, seed):
        h.update(chunk)
    return h.hexdigest()


HEADERS = {"X-Fulmen-Client": "tests", "Content-Type": "application/octet-stream"}
RUN = "/api/v1/entities/local/projects/mem/runs/r1"


def _start_run(server: Server) -> None:
    from tests.server.runlogs import LogWriter

    w = LogWriter()
    w.run("r1", "mem")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", RUN + "/records", body=w.body(), headers=HEADERS)
    answer = conn.getresponse()
    assert answer.status == 200, answer.read()
    conn.close()


def _upload(server: Server, name: str, mib: int, seed: int) -> str:
    """PUT a run file of ``mib`` MiB in chunks (no Content-Length: chunked transfer)."""
    digest = _digest(mib, seed)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    conn.request(
        "PUT",
        f"{RUN}/files/{name}?digest={digest}",
        body=_chunks(mib, seed),
        headers=HEADERS,
        encode_chunked=True,
    )
    answer = conn.getresponse()
    assert answer.status == 200, answer.read()
    answer.read()
    conn.close()
    return digest


def _download(server: Server, name: str) -> tuple[str, int]:
    """GET a run file, read 1 MiB at a time: (its SHA-256, its size)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    conn.request("GET", f"{RUN}/files/{name}", headers={"X-Fulmen-Client": "tests"})
    answer = conn.getresponse()
    assert answer.status == 200, answer.read()
    h, size = hashlib.sha256(), 0
    while chunk := answer.read(1 << 20):
        h.update(chunk)
        size += len(chunk)
    conn.close()
    return h.hexdigest(), size


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_large_file_streams_through_the_server_in_bounded_memory(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    args: list[str] = []
    env = clean_env()
    if kind == "s3":
        moto: MotoServer = request.getfixturevalue("moto")
        env.update(moto.env())
        args = ["--blobs", f"s3://{BUCKET}/mem"]
    server = Server(tmp_path / "server", env, *args)
    try:
        _start_run(server)
        # warm up: every code path of a multipart upload and a download has run once
        warm = _upload(server, "warm.bin", WARM_MIB, 1)
        assert _download(server, "warm.bin") == (warm, WARM_MIB << 20)
        base = server.peak_rss()
        big = _upload(server, "big.bin", BIG_MIB, 2)
        after_upload = server.peak_rss()
        assert _download(server, "big.bin") == (big, BIG_MIB << 20)
        after_download = server.peak_rss()
    finally:
        server.stop()
    grew_up, grew_down = after_upload - base, after_download - after_upload
    print(f"{kind}: peak RSS {base >> 20} MiB, +{grew_up >> 20} MiB up, +{grew_down >> 20} down")
    # a server that held the file would grow by its 160 MiB; streaming holds a few parts
    assert grew_up < 48 << 20, (grew_up, base)
    assert grew_down < 48 << 20, (grew_down, base)
