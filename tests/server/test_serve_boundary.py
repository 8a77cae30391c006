"""The HTTP boundary of a real ``fulmen server`` / ``fulmen ui`` process on loopback: Host names
(DNS rebinding), cross-origin writes, what the server says at start, slow connections."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.runlogs import LogWriter

pytestmark = pytest.mark.slow

RUNS = "/api/v1/entities/local/projects/p/runs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if _request(port, "GET", "/api/v1/health")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not come up")


def _request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body, headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@contextlib.contextmanager
def _server(tmp_path: Path, *args: str) -> Iterator[tuple[int, list[str]]]:
    """A ``fulmen server`` on a free port; the list holds what it printed, once it has stopped."""
    port = _free_port()
    data = str(tmp_path / "data")
    cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(port), "--data", data, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed: list[str] = []
    try:
        _wait_up(port, proc)
        yield port, printed
    finally:
        proc.terminate()
        printed.append(proc.communicate(timeout=30)[0])


@pytest.fixture(scope="module")
def loopback_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    # one process for the module: starting one costs seconds on a loaded machine
    tmp = tmp_path_factory.mktemp("serve")
    port = _free_port()
    data = str(tmp / "data")
    cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(port), "--data", data,
           "--allowed-host", "tracker.lan",
           "--header-timeout", "1", "--body-timeout", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_up(port, proc)
        yield port, str(tmp / "data")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _body(run_id: str) -> bytes:
    w = LogWriter()
    w.run(run_id)
    return w.body()


def test_a_rebinding_host_is_refused_by_a_real_server(loopback_server: tuple[int, str]) -> None:
    port, _ = loopback_server
    status, _, body = _request(port, "GET", RUNS, headers={"Host": f"rebind.test:{port}"})
    assert status == 400
    assert "rebind.test" in json.loads(body)["detail"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "tracker.lan"):
        assert _request(port, "GET", RUNS, headers={"Host": host})[0] == 200, host


def test_a_real_server_keeps_its_data_owner_only(loopback_server: tuple[int, str]) -> None:
    port, data = loopback_server
    assert _request(port, "GET", RUNS)[0] == 200
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    for name in os.listdir(data):
        if name.startswith("fulmen.db"):
            assert stat.S_IMODE(os.stat(os.path.join(data, name)).st_mode) == 0o600, name


def test_a_cross_origin_post_makes_no_run_on_a_real_server(
    loopback_server: tuple[int, str],
) -> None:
    port, _ = loopback_server
    evil = {
        "Origin": "https://evil.test",
        "Sec-Fetch-Site": "cross-site",
        "Content-Type": "text/plain",
    }
    assert _request(port, "POST", f"{RUNS}/x1/records", _body("x1"), evil)[0] == 403
    assert (
        _request(port, "POST", f"{RUNS}/x2/records", _body("x2"), {"Content-Type": "text/plain"})[0]
        == 415
    )
    runs = json.loads(_request(port, "GET", RUNS)[2])
    assert [r["id"] for r in runs["runs"]] == []


def test_fulmen_ui_refuses_a_rebinding_host_and_cross_origin_writes(tmp_path: Path) -> None:
    w = LogWriter(tmp_path / "fulmen" / "run-20260101_000000-aaaa1111" / "run-aaaa1111.fulmen")
    w.run("aaaa1111", "p")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "ui", str(tmp_path), "--serve-for", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line
        port = int(found.group(1))
        assert _request(port, "GET", "/local/p")[0] == 200
        assert _request(port, "GET", "/local/p", headers={"Host": "rebind.test"})[0] == 400
        evil = {"Origin": "https://evil.test"}
        assert _request(port, "POST", f"{RUNS}/x1/records", _body("x1"), evil)[0] == 403
        runs = json.loads(_request(port, "GET", RUNS)[2])
        assert [r["id"] for r in runs["runs"]] == ["aaaa1111"]
    finally:
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()


def test_a_server_off_loopback_without_keys_says_nothing_can_log(tmp_path: Path) -> None:
    # 0.0.0.0 with keys required: the network reaches nothing without a key
    with _server(tmp_path, "--host", "0.0.0.0") as (port, printed):
        assert _request(port, "GET", RUNS)[0] == 401
    out = printed[0]
    assert "API keys required" in out
    assert "nothing can log to this server" in out
    assert "create-key --entity NAME" in out


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (the timeout only keeps a failing test from hanging)."""
    sock.settimeout(60)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) read from ``sock``."""
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    assert length, head
    while len(body) < int(length.group(1)):
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_half_sent_request_is_closed_by_the_server(loopback_server: tuple[int, str]) -> None:
    port, _ = loopback_server
    with socket.create_connection(("127.0.0.1", port)) as half:
        half.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert _closed_by_server(half)
    with socket.create_connection(("127.0.0.1", port)) as silent:  # connected, sends nothing
        assert _closed_by_server(silent)
    with socket.create_connection(("127.0.0.1", port)) as ok:  # a whole request is answered
        ok.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _response(ok).startswith(b"HTTP/1.1 200")
        ok.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # then half a second
        assert _closed_by_server(ok)


def test_a_stalled_body_is_answered_408_and_closed(loopback_server: tuple[int, str]) -> None:
    port, _ = loopback_server
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(
            b"POST /api/v1/entities/local/projects/p/runs/s1/records HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"x" * 10
        )
        answer = _response(slow)
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"stopped arriving" in answer
        assert _closed_by_server(slow)


def test_connections_over_the_limit_are_refused(tmp_path: Path) -> None:
    with _server(tmp_path, "--max-connections", "3") as (port, _):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            assert _request(port, "GET", "/api/v1/health")[0] == 503
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 30
        while _request(port, "GET", "/api/v1/health")[0] != 200:  # the closed ones are gone
            assert time.monotonic() < deadline
            time.sleep(0.1)
