"""``fulmen ui [DIR]``: the dashboard over local run folders, with nothing else to start.

It serves the app (``create_app``) on loopback with an embedded SQLite database in a fresh
temporary folder, and a follower thread feeds it every run folder under DIR through the same HTTP
path live uploads take (``fulmen.track._upload.RunUpload``: whole frames, idempotent by sequence).
The follower polls: each pass uploads what the run logs gained since the last one, so running
runs update live; a finished run's files and artifacts are uploaded once, after its EXIT record.
The run folders are only read (no ``.synced`` marker is written: the database is thrown away).
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fulmen.server._security import SecurityConfig, allowed_hosts
from fulmen.server._serve import ConnectionLimits, uvicorn_config
from fulmen.server.app import ServerConfig, create_app

log = logging.getLogger("fulmen.server")


def run_folders(root: Path) -> list[Path]:
    """Every run folder (``run-<time>-<id>`` holding a run log) in ``root``, ``root/fulmen``, and
    one level below (``root/<name>/fulmen``: a ``save_dir`` per experiment)."""
    from fulmen.track._layout import log_path

    found: set[Path] = set()
    for pattern in ("run-*-*", "fulmen/run-*-*", "*/fulmen/run-*-*", "*/run-*-*"):
        for path in root.glob(pattern):
            try:
                if path.is_dir() and log_path(path).is_file():
                    found.add(path)
            except (IndexError, OSError):
                continue
    return sorted(found, key=lambda p: p.name)


@dataclass
class _Followed:
    upload: object  # RunUpload (imported lazily)
    finished: bool = False
    size: int = -1  # the run log's size when it was last seen finished
    failed: str = ""


@dataclass
class Follower:
    """Uploads the run folders under ``root`` to ``base_url``, again every ``poll`` seconds."""

    root: Path
    base_url: str
    poll: float = 1.0
    echo: Callable[[str], None] = print
    _runs: dict[Path, _Followed] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def once(self) -> int:
        """One pass over every run folder; answers how many runs are known."""
        from fulmen.track._replay import is_live
        from fulmen.track._upload import Client, RunUpload, ServerError, UploadError, _describe

        for run_dir in run_folders(self.root):
            known = self._runs.get(run_dir)
            if known is None:
                known = self._runs[run_dir] = _Followed(
                    RunUpload(run_dir, Client(self.base_url, None))
                )
            upload = known.upload
            assert isinstance(upload, RunUpload)
            if known.finished:
                try:
                    if upload.log_path.stat().st_size == known.size:
                        continue
                except OSError:
                    continue
                known.finished = False  # it grew: resumed by a new process
            try:
                size = upload.log_path.stat().st_size  # before: what grows after is seen next
                upload.drain()
                live = is_live(run_dir)
                if upload.exited or not live:
                    upload.upload_files()
                    upload.upload_artifacts()
                    if not upload.exited:
                        upload.mark_crashed()
                    known.finished = True
                    known.size = size
            except (UploadError, ServerError, OSError) as exc:
                why = _describe(exc)
                if why != known.failed:  # say it once, keep trying on the next pass
                    log.warning("fulmen ui: uploading %s failed: %s", run_dir, why)
                    self.echo(f"fulmen ui: {run_dir.name}: {why}")
                known.failed = why
        return len(self._runs)

    def follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.once()
            except Exception as exc:
                log.exception("fulmen ui: a pass over the run folders failed")
                self.echo(f"fulmen ui: {exc!r}")
            self._stop.wait(self.poll)

    def stop(self) -> None:
        self._stop.set()


def serve_runs(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    data: Path | None = None,
    poll: float = 1.0,
    serve_for: float | None = None,
    echo: Callable[[str], None] = print,
    path: str = "/",
) -> None:
    """Serve the dashboard over the run folders under ``root`` until Ctrl-C (or ``serve_for``
    seconds). ``port=0`` picks a free port. ``path`` is the page whose URL is printed."""
    import uvicorn

    temporary = data is None
    folder = Path(tempfile.mkdtemp(prefix="fulmen-ui-")) if data is None else data
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # a temporary one is 0700 already
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    url = f"http://{host}:{bound}"
    # loopback only (the command refuses any other --host): the Host check of a loopback server
    security = SecurityConfig(allowed_hosts=allowed_hosts(True, ()))
    # its own throwaway folder, blobs included: a FULMEN_BLOBS meant for `fulmen server` is not
    # this view's (None, 0: not read from the environment)
    config = ServerConfig(data=folder, security=security, blobs=None, presign_seconds=0)
    app = create_app(config)
    app.state.resources.store  # noqa: B018 - create the database before listening
    server = uvicorn.Server(uvicorn_config(app, ConnectionLimits()))
    follower = Follower(root, url, poll, echo)
    if serve_for is not None:

        def stop_later() -> None:
            time.sleep(serve_for)
            server.should_exit = True

        threading.Thread(target=stop_later, daemon=True).start()

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.should_exit:
            return
        follower.once()  # the runs are in before the URL is printed
        echo(f"fulmen ui: serving the runs under {root} at {url}{path}  (Ctrl-C to stop)")
        follower.follow()

    threading.Thread(target=announce, name="fulmen-ui-follow", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        follower.stop()
        sock.close()
        app.state.resources.store.close()
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
