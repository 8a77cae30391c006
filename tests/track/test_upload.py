"""The uploader (``fulmen.track._upload``): which failures it retries, which end it, what it logs.

The server here is a tiny ``http.server`` on loopback that speaks the few routes the uploader
uses (records, files, heartbeat) and answers from a script first: a status (503, 400, ...), a
dropped connection, or an answer cut short. The end-to-end tests against the real fulmen server
are in tests/e2e/test_server_e2e.py.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.error
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fulmen import track
from fulmen.track import _upload
from fulmen.track import runlog as rl
from fulmen.track._upload import (
    Client,
    RunUpload,
    ServerError,
    Uploader,
    UploadError,
    _retryable,
    synced_up_to,
)


@dataclass
class Script:
    """What the fake server does: ``answers`` for POST .../records first (an int status, "drop"
    the connection, "short" a cut-off answer), then it acknowledges every record it is sent.
    ``bad_held`` makes GET .../records answer a body without "held" (a server from another
    version, or a bug in the client's reading of it)."""

    answers: list[int | str] = field(default_factory=list)
    bad_held: bool = False
    held: int = 0
    refuse: list[int] = field(default_factory=list)  # seqs the answer names as refused
    seen: list[tuple[str, str, int | str]] = field(default_factory=list)  # method, path, answer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # http.server's names
        pass  # quiet

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        script = self.server.script
        if self.path.endswith("/records"):
            script.seen.append(("GET", self.path, 200))
            self._answer(200, {"wrong": 1} if script.bad_held else {"held": script.held})
        elif self.path.endswith("/files"):
            script.seen.append(("GET", self.path, 200))
            self._answer(200, {"files": []})
        else:
            script.seen.append(("GET", self.path, 404))
            self._answer(404, {"detail": "no such route"})

    def do_POST(self) -> None:
        script = self.server.script
        body = self._body()
        if not self.path.endswith("/records"):
            script.seen.append(("POST", self.path, 200))
            self._answer(200, {})
            return
        answer: int | str = script.answers.pop(0) if script.answers else 200
        script.seen.append(("POST", self.path, answer))
        if answer == "drop":
            self.close_connection = True  # no status line at all: the client sees a reset
        elif answer == "short":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"held":')  # then the connection closes: an IncompleteRead
            self.close_connection = True
        elif answer != 200:
            assert isinstance(answer, int)
            self._answer(answer, {"detail": f"scripted {answer}"})
        else:
            frames = rl.read_records(rl.header() + zlib.decompress(body))
            seqs = [r.seq for r in frames if isinstance(r, rl.Record)]
            script.held = max([script.held, *seqs])
            refused = [
                {"seq": q, "kind": "config", "field": "deep", "reason": "nested too deep"}
                for q in seqs
                if q in script.refuse
            ]
            self._answer(200, {"held": script.held, **({"refused": refused} if refused else {})})

    def do_PUT(self) -> None:
        self._body()
        self.server.script.seen.append(("PUT", self.path, 200))
        self._answer(200, {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def fake_server() -> Iterator[_Server]:
    server = _Server(Script())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_upload, "BACKOFF_S", (0.01, 0.05))


def _finished_run(run_id: str) -> tuple[Path, int]:
    """A finished offline run: its folder and its last sequence number."""
    run = track.init(id=run_id, project="p")
    for i in range(5):
        run.log({"loss": 1.0 / (i + 1)})
    run.finish()
    last = max(r.seq for r in rl.read_records(run.log_path) if isinstance(r, rl.Record))
    return run.run_dir, last


def _uploader(server: _Server, run_dir: Path) -> Uploader:
    upload = RunUpload(run_dir, Client(server.url, timeout=5), "e", "p", run_dir.name[-4:])
    return Uploader(upload, poll=0.01)


def _posts(server: _Server) -> list[int | str]:
    return [answer for method, path, answer in server.script.seen if method == "POST"]


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "fulmen.track" and r.levelno == level
    ]


@pytest.mark.parametrize("answer", [503, 500, 429, "drop", "short"])
def test_a_passing_failure_is_retried_then_everything_arrives(
    fake_server: _Server, answer: int | str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fulmen.track")
    run_dir, last = _finished_run("re01")
    fake_server.script.answers = [answer]
    uploader = _uploader(fake_server, run_dir)
    uploader.start()
    assert uploader.finish(timeout=30)
    assert _posts(fake_server) == [answer, 200]
    assert fake_server.script.held == last
    assert synced_up_to(run_dir, fake_server.url) == last
    assert uploader.error is None  # the failure passed
    warned = _messages(caplog, logging.WARNING)
    assert len(warned) == 1
    assert "upload of" in warned[0]
    assert "retry in" in warned[0]
    assert _messages(caplog, logging.INFO) == [f"upload of {run_dir.name} resumed"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_a_refusal_is_not_retried_and_is_surfaced(
    fake_server: _Server, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fulmen.track")
    run_dir, _ = _finished_run("no01")
    fake_server.script.answers = [status] * 5
    uploader = _uploader(fake_server, run_dir)
    uploader.start()
    assert not uploader.finish(timeout=30)
    assert _posts(fake_server) == [status]  # once: retrying a refusal only repeats it
    assert uploader.error == f"HTTP {status} scripted {status}"
    assert synced_up_to(run_dir, fake_server.url) == -1
    [stopped] = _messages(caplog, logging.ERROR)
    assert f"HTTP {status}" in stopped
    assert "fulmen sync" in stopped
    assert all(r.exc_info is None for r in caplog.records)  # a refusal is not a traceback


def test_a_bug_is_not_retried_and_is_logged_with_its_traceback(
    fake_server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    # the server answers 200 without the "held" the client reads: a KeyError in the uploader,
    # which retrying would repeat every backoff until finish()
    caplog.set_level(logging.INFO, logger="fulmen.track")
    run_dir, _ = _finished_run("bug1")
    fake_server.script.bad_held = True
    uploader = _uploader(fake_server, run_dir)
    uploader.start()
    assert not uploader.finish(timeout=30)
    gets = [p for method, p, _ in fake_server.script.seen if method == "GET"]
    assert len(gets) == 1
    assert uploader.error == "KeyError: 'held'"
    [record] = [r for r in caplog.records if r.name == "fulmen.track"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


def test_no_server_at_all_is_retried_until_finish_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="fulmen.track")
    server = _Server(Script())
    url = server.url
    server.server_close()  # nothing listens on this port now: connection refused
    run_dir, _ = _finished_run("off1")
    uploader = Uploader(RunUpload(run_dir, Client(url, timeout=5), "e", "p", "off1"), poll=0.01)
    uploader.start()
    assert not uploader.finish(timeout=0.5)
    assert uploader.error is not None
    assert "refused" in uploader.error.lower()
    warned = _messages(caplog, logging.WARNING)
    assert len(warned) >= 2  # tried again (and again), each attempt said
    assert not _messages(caplog, logging.ERROR)


def _raised(call: Callable[[], object]) -> Exception:
    try:
        call()
    except Exception as exc:  # the test keeps whatever was raised
        return exc
    raise AssertionError("no error")


def test_retryable_decides_for_every_error(fake_server: _Server) -> None:
    # the errors as the client really raises them, against the loopback server
    client = Client(fake_server.url, timeout=5)

    def post() -> bytes:
        return client.request("POST", "/x/records", zlib.compress(b""))

    closed = _Server(Script())
    refused_url = closed.url
    closed.server_close()
    refused = _raised(lambda: Client(refused_url, timeout=5).json("GET", "/viewer"))
    assert isinstance(refused, urllib.error.URLError)
    assert _retryable(refused)
    fake_server.script.answers = [503, 400, "drop", "short"]
    unavailable, bad, dropped, short = (_raised(post) for _ in range(4))
    assert isinstance(unavailable, ServerError)
    assert unavailable.code == 503
    assert _retryable(unavailable)
    assert isinstance(bad, ServerError)
    assert bad.code == 400
    assert not _retryable(bad)
    assert isinstance(dropped, OSError)  # URLError around RemoteDisconnected
    assert _retryable(dropped)
    assert isinstance(short, http.client.IncompleteRead)  # not an OSError: retried all the same
    assert _retryable(short)
    missing = _raised(lambda: client.json("GET", "/nothing"))
    assert isinstance(missing, ServerError)
    assert not _retryable(missing)
    for status, retried in [(500, True), (502, True), (504, True), (408, True), (429, True)]:
        assert _retryable(ServerError(status, "")) is retried
    assert _retryable(TimeoutError("timed out"))
    assert not _retryable(UploadError("damaged"))
    assert not _retryable(KeyError("held"))
    assert not _retryable(TypeError("a bug"))


def test_records_the_server_refuses_are_counted_logged_and_reported_at_finish(
    fake_server: _Server, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="fulmen.track")
    run_dir, last = _finished_run("rf01")
    fake_server.script.refuse = [3]
    uploader = _uploader(fake_server, run_dir)
    uploader.start()
    assert _upload.finish_online(uploader)  # the batch was stored: the upload is complete
    assert fake_server.script.held == last
    assert uploader.upload.refused == 1
    [warned] = _messages(caplog, logging.WARNING)
    assert "refused 1 record(s)" in warned
    assert "seq 3, config deep: nested too deep" in warned
    err = capsys.readouterr().err
    assert "fulmen: the server refused 1 record(s) of this run" in err
    assert "seq 3, config deep: nested too deep" in err
