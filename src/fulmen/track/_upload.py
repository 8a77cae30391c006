"""Uploading a run log to a fulmen server: the online uploader thread and ``fulmen sync``.

Standard library only (``urllib.request``), so ``import fulmen.track`` stays light. The uploader
reads whole frames from the run log (the durable source of truth), posts them in batches
(deflate-compressed, at most ``BATCH_BYTES``) to ``POST .../runs/<id>/records``, and moves on by
what the server acknowledges: the highest contiguous sequence it holds. Re-sending is harmless
(ingest is idempotent), so an outage or a restart of either side only means resending. ``log()``
never waits for any of this: it only appends to the file.

Media files (``files/media/``, content-addressed, never rewritten) are sent while the run is live,
whenever the uploader is idle and FILE records have named new ones. After everything is
acknowledged, the rest of the run's files (``files/``) and the artifact blobs the server lacks are
uploaded, and ``.synced`` in the run folder records the acknowledged sequence per server.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from fulmen.track import runlog as rl
from fulmen.track._artifacts import file_digest

BATCH_BYTES = 4 << 20
READ_BYTES = 16 << 20
MARKER = ".synced"
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
HEARTBEAT_S = 60.0  # a live run with nothing to send says so this often (the server: "stale")
BACKOFF_S = (0.5, 15.0)  # the uploader's first wait after a failure, and the longest
log = logging.getLogger("fulmen.track")


class ServerError(RuntimeError):
    """The server answered with an error status (``code``) and said why (``detail``)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"HTTP {code} {detail}".strip())
        self.code = code
        self.detail = detail


class UploadError(RuntimeError):
    """The server refused the upload for good (a bad key, a malformed run log): retrying won't help."""  # noqa: E501


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


@dataclass
class Client:
    """A tiny HTTP client for the fulmen API (``base_url`` like ``http://127.0.0.1:8080``)."""

    base_url: str
    api_key: str | None = None
    timeout: float = 30.0

    def request(
        self,
        method: str,
        path: str,
        body: bytes | _Exactly | None = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> bytes:
        url = self.base_url.rstrip("/") + "/api/v1" + path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail", "")
            except (ValueError, OSError, AttributeError):
                detail = ""
            finally:
                exc.close()  # the error holds the connection open until closed
            raise ServerError(exc.code, str(detail)) from None

    def put_file(self, path: str, local: Path, query: dict[str, Any] | None = None) -> None:
        """PUT a file's bytes, streamed (a blob may be larger than memory)."""
        size = local.stat().st_size
        with local.open("rb") as f:
            self.request(
                "PUT",
                path,
                _Exactly(f, size),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                query=query,
            )

    def json(self, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        return json.loads(self.request(method, path, body, headers=headers, **kw))


class _Exactly:
    """A file read as exactly ``size`` bytes (what Content-Length said), even if it grows."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


def _retryable(exc: BaseException) -> bool:
    """Whether the uploader tries again after ``exc``: an answer that says "later" (5xx, 408,
    425, 429) or a network failure (no connection, a reset, a timeout, a broken HTTP answer;
    ``URLError`` and ``TimeoutError`` are kinds of ``OSError``) is retried; any other answer (a 4xx:
    a bad key, a refused record), ``UploadError`` and every other exception (a bug: retrying it
    would only repeat it until ``finish()``) are not."""
    if isinstance(exc, ServerError):
        return exc.code in RETRYABLE
    return isinstance(exc, (OSError, http.client.HTTPException))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (ServerError, UploadError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"  # a bug: its type says more than its message


@dataclass
class RunUpload:
    """The upload of one run folder: where it goes and how far the server has it."""

    run_dir: Path
    client: Client
    entity: str | None = None
    project: str | None = None
    run_id: str | None = None
    held: int = -1  # -1: not asked yet
    offset: int = rl.HEADER_SIZE  # file offset of the first frame past ``held``
    last_seq: int = 0  # the last sequence seen in the file
    exited: bool = False  # the log holds an EXIT record
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # path -> type, from FILE records
    anonymous: bool = False  # with no key, log into an anonymous space (--allow-anonymous)
    _media_sent: set[str] = field(default_factory=set)  # media files sent while the run is live
    refused: int = 0  # records the server refused (stored around them, named in its answers)
    refused_first: dict[str, Any] | None = None  # the first of them, as the server named it

    @property
    def log_path(self) -> Path:
        from fulmen.track._layout import log_path

        return log_path(self.run_dir)

    def _base(self) -> str:
        assert self.entity and self.project and self.run_id  # noqa: PT018
        return (
            f"/entities/{_quote(self.entity)}/projects/{_quote(self.project)}"
            f"/runs/{_quote(self.run_id)}"
        )

    def _identify(self) -> None:
        """entity, project and id from the first RUN record (the server's viewer for no entity)."""
        if self.run_id is not None and self.entity:
            return
        with self.log_path.open("rb") as f:
            head = f.read(1 << 16)
        for item in rl.read_records(head):
            if isinstance(item, rl.Record) and item.kind == "run":
                self.run_id = str(item.data["id"])
                self.project = self.project or str(item.data.get("project") or "uncategorized")
                self.entity = self.entity or item.data.get("entity")
                break
        else:
            raise UploadError(f"{self.log_path} has no run record yet")
        if not self.entity:
            try:
                self.entity = str(self.client.json("GET", "/viewer")["entity"])
            except ServerError as exc:
                if exc.code != 401 or not self.anonymous:
                    raise
                # no key, anonymous=True: an anonymous space, reachable only by its link
                self.entity = str(self.client.json("POST", "/anonymous", {})["entity"])

    def step(self) -> bool:
        """Upload the next batch of whole frames in the file; False when there was none."""
        self._identify()
        if self.held < 0:
            self.held = int(self.client.json("GET", self._base() + "/records")["held"])
        base = self.offset
        read = READ_BYTES
        while True:
            with self.log_path.open("rb") as f:
                f.seek(base)
                chunk = f.read(read)
            frames, acked_end = self._scan(chunk, base)
            if frames or acked_end or len(chunk) < read or read >= rl.MAX_FRAME:
                break
            read *= 2  # one frame bigger than what was read: read more
        if frames:
            body = zlib.compress(chunk[frames[0][1] : frames[-1][2]], 1)
            data = self.client.request(
                "POST",
                self._base() + "/records",
                body,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Encoding": "deflate",
                },
            )
            answer = json.loads(data)
            self.held = int(answer["held"])
            if answer.get("refused"):
                self._note_refused(answer)
            acked_end = max([acked_end] + [e for seq, _, e in frames if seq <= self.held])
        self.offset = base + acked_end
        return bool(frames) and any(seq <= self.held for seq, _, _ in frames)

    def _note_refused(self, answer: dict[str, Any]) -> None:
        """The server stored the batch but refused some records (a hostile or malformed field):
        counted for ``finish()``'s message and logged; they stay in the local run log."""
        refused = answer["refused"]
        total = int(answer.get("refused_total") or len(refused))
        self.refused += total
        first = refused[0]
        log.warning(
            "the server refused %d record(s) of %s (kept in the local run log); the first: "
            "seq %s, %s %s: %s",
            total, self.run_dir.name, first.get("seq"), first.get("kind"),
            first.get("field") or "", first.get("reason"),
        )  # fmt: skip
        self.refused_first = first

    def _scan(self, chunk: bytes, base: int) -> tuple[list[tuple[int, int, int]], int]:
        """The frames of ``chunk`` to send next, (seq, start, end), and where the acknowledged
        frames at its start end. Runs of rows of one size are read in bulk (``history_run``):
        reading the file is a share of ``fulmen sync``'s time."""
        frames: list[tuple[int, int, int]] = []
        acked_end = size = 0
        buf, pos, head = rl.header() + chunk, rl.HEADER_SIZE, rl.HEADER_SIZE
        while True:
            for item in rl.read_records(buf, pos):
                if not isinstance(item, rl.Record):
                    if not item.torn:  # damage inside the file: say so rather than stop silently
                        raise UploadError(
                            f"{self.log_path} is damaged at byte {base + item.offset - head}"
                            f" ({item.reason}); the server holds records up to {self.held}"
                        )
                    return frames, acked_end  # a torn tail (being written, a crash, or the end)
                run = [(item.seq, item.offset - head, item.end - head)]
                if item.seq > self.last_seq:
                    self._observe(item)
                if item.kind == "history":
                    stride, at = item.end - item.offset, item.end - item.offset - len(item.data) - 4
                    room = (BATCH_BYTES - size) // stride + 1  # no more than the batch can take
                    count = rl.history_run(buf, item, max(self.held - item.seq, 0) + room)
                    starts = range(item.end, item.end + count * stride, stride)
                    run += [(rl.SEQ.unpack_from(buf, s + at)[0], s - head, s + stride - head)
                            for s in starts]  # fmt: skip
                for seq, start, end in run:
                    self.last_seq = max(self.last_seq, seq)
                    if seq <= self.held:
                        acked_end = end
                        continue
                    if size + end - start > BATCH_BYTES and frames:
                        return frames, acked_end
                    frames.append((seq, start, end))
                    size += end - start
                if len(run) > 1:
                    pos = run[-1][2] + head
                    break  # read on after the run
            else:
                return frames, acked_end

    @property
    def done(self) -> bool:
        """Everything in the file so far is acknowledged."""
        return self.held >= self.last_seq and self.held >= 0

    def _observe(self, rec: rl.Record) -> None:
        self.last_seq = max(self.last_seq, rec.seq)
        if rec.kind == "exit":
            self.exited = True
        elif rec.kind == "run":
            self.exited = False
        elif rec.kind == "artifact" and not rec.data.get("used"):
            self.artifacts.append(rec.data)
        elif rec.kind == "file":
            self.files[str(rec.data["path"])] = str(rec.data.get("type") or "")

    def drain(self) -> None:
        """Upload every whole frame in the file now (raises on the first failure)."""
        while True:
            before = self.offset
            sent = self.step()
            if not sent and self.offset == before:
                return

    def upload_new_media(self) -> int:
        """While the run is live: send the media files that FILE records have named since the last
        call (content-addressed under ``media/``, so never changed once named); the number sent.
        Other files wait for the end (``upload_files``): a live run may still be writing them."""
        folder = (self.run_dir / "files").resolve()
        new = [p for p in self.files if p.startswith("media/") and p not in self._media_sent]
        for path in sorted(new):
            local = (folder / path).resolve()
            if local.is_relative_to(folder) and local.is_file():
                digest = file_digest(local)
                self.client.put_file(
                    self._base() + "/files/" + urllib.parse.quote(path), local, {"digest": digest}
                )
            self._media_sent.add(path)
        return len(new)

    def upload_files(self) -> None:
        """Upload the run's files (those FILE records name) whose content the server lacks."""
        folder = (self.run_dir / "files").resolve()
        from fulmen.track._media_store import finalize_pending

        for path in finalize_pending(folder):  # media, those of a killed run's encoder included
            self.files.setdefault(path, "media")
        remote = {
            f["path"]: f.get("digest")
            for f in self.client.json("GET", self._base() + "/files")["files"]
        }
        for path in sorted(self.files):
            local = (folder / path).resolve()
            if not local.is_relative_to(folder) or not local.is_file():
                continue  # a link out of the run folder, or a file that is gone: never sent
            digest = file_digest(local)
            if remote.get(path) == digest:
                continue
            try:
                self.client.put_file(
                    self._base() + "/files/" + urllib.parse.quote(path), local, {"digest": digest}
                )
            except ServerError as exc:
                if exc.code != 400:
                    raise
                # the file changed while it was sent (a live run's output.log): next time

    def upload_artifacts(self) -> None:
        """Each logged artifact: the blobs the server lacks (by digest), then its manifest."""
        assert self.entity
        assert self.project
        objects = self.run_dir.parent / "artifacts" / "objects"
        for record in self.artifacts:
            staged = (
                self.run_dir / "files" / "artifacts" / f"{record['name']}-{record['version']}.json"
            )
            if not staged.is_file():
                continue
            manifest = json.loads(staged.read_text())
            entries = manifest.get("entries") or {}
            digests = sorted({e["digest"] for e in entries.values()})
            missing = self.client.json(
                "POST", f"/entities/{_quote(self.entity)}/blobs/missing", {"digests": digests}
            )["missing"]
            for digest in missing:
                self.client.put_file(
                    f"/entities/{_quote(self.entity)}/blobs/{digest}",
                    objects / digest[:2] / digest,
                )
            self.client.json(
                "PUT",
                f"/entities/{_quote(self.entity)}/projects/{_quote(self.project)}"
                f"/artifacts/{_quote(str(record['name']))}/manifest",
                {k: manifest.get(k) for k in ("digest", "entries", "metadata", "description")},
            )

    def heartbeat(self) -> None:
        if self.held > 0:  # the run exists on the server
            self.client.json("POST", self._base() + "/heartbeat", {})

    def mark_crashed(self) -> None:
        self.client.json("POST", self._base() + "/crashed", {"last_seq": self.last_seq})

    def write_marker(self) -> None:
        path = self.run_dir / MARKER
        try:
            marks = json.loads(path.read_text())
        except (OSError, ValueError):
            marks = {}
        # the whole file's size, torn tail included: called only once nothing more will be
        # written (the run exited or its writer is gone), so a later sync skips the run
        size = self.log_path.stat().st_size
        marks[self.client.base_url.rstrip("/")] = {"held": self.held, "size": size}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(marks))
        os.replace(tmp, path)


def synced_up_to(run_dir: Path, base_url: str, what: str = "held") -> int:
    """What ``.synced`` says ``base_url`` acknowledged: the sequence (``held``) or the size of the
    run log it covers (``size``); -1 when never synced there."""
    try:
        marks = json.loads((run_dir / MARKER).read_text())
        return int(marks[base_url.rstrip("/")][what])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


class Uploader:
    """The online uploader: a daemon thread that tails the run log while the run writes it.

    It wakes every second (at once for ``finish()``) and sends what the run appended. A failure
    that may pass (a network error, a 5xx, 408, 425, 429: see ``_retryable``) is retried with
    exponential backoff (0.5 s doubling to 15 s); any other (a 4xx, a bug) stops the thread and
    is kept in ``error``. Both go to the ``fulmen.track`` logger; ``log()`` is never involved.
    ``finish(timeout)`` waits at most ``timeout`` seconds for the rest, then reports whether
    everything reached the server.
    """

    def __init__(self, upload: RunUpload, *, poll: float = 1.0) -> None:
        self.upload = upload
        self.poll = poll
        self.error: str | None = None
        self._stop = threading.Event()
        self._final = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fulmen-uploader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        backoff = BACKOFF_S[0]
        heard = time.monotonic()  # when the server last heard from this run
        while not self._stop.is_set():
            try:
                sent = self.upload.step()
                if self.error is not None:
                    log.info("upload of %s resumed", self.upload.run_dir.name)
                    self.error = None
                backoff = BACKOFF_S[0]
                if sent:
                    heard = time.monotonic()
                elif time.monotonic() - heard > HEARTBEAT_S:
                    self.upload.heartbeat()  # a quiet run is not a dead one
                    heard = time.monotonic()
                if self._final.is_set() and not sent and self.upload.done:
                    self.upload.upload_files()
                    self.upload.upload_artifacts()
                    self.upload.write_marker()
                    return
                if not sent and not self._final.is_set() and self.upload.upload_new_media():
                    heard = time.monotonic()  # a live run's images reach the dashboard as logged
                    continue
                if not sent:
                    # idle: wait for more records, or for finish() to ask for the rest
                    (self._stop if self._final.is_set() else self._final).wait(self.poll)
            except Exception as exc:  # every error is decided here: retried, or the end
                self.error = _describe(exc)
                name = self.upload.run_dir.name
                if not _retryable(exc):
                    bug = not isinstance(exc, (ServerError, UploadError))
                    log.error(
                        "upload of %s stopped: %s; `fulmen sync %s` sends the rest",
                        name, self.error, self.upload.run_dir, exc_info=exc if bug else None,
                    )  # fmt: skip
                    return
                log.warning("upload of %s failed: %s; retry in %.1f s", name, self.error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])

    def finish(self, timeout: float) -> bool:
        """Upload what is left, waiting at most ``timeout`` s; True when the server has it all."""
        self._final.set()
        self._thread.join(timeout)
        self._stop.set()
        return (
            not self._thread.is_alive()
            and synced_up_to(self.upload.run_dir, self.upload.client.base_url)
            >= self.upload.last_seq
        )


def sync_run(run_dir: Path, client: Client, *, live: bool) -> RunUpload:
    """Upload one run folder completely (``fulmen sync``); mark it crashed if it died unfinished."""
    upload = RunUpload(run_dir, client)
    upload.drain()
    if not upload.done:
        raise UploadError(
            f"the server holds {run_dir.name} up to record {upload.held} of {upload.last_seq}"
        )
    upload.upload_files()
    upload.upload_artifacts()
    if not upload.exited and not live:
        upload.mark_crashed()
    if upload.exited or not live:
        upload.write_marker()
    return upload


FINISH_TIMEOUT_VARIABLE = "FULMEN_FINISH_TIMEOUT"


def start_online(
    run_dir: Path,
    base_url: str,
    api_key: str | None,
    project: str,
    entity: str | None,
    run_id: str,
    anonymous: bool = False,
) -> Uploader:
    """The uploader of a run in online mode, started."""
    upload = RunUpload(run_dir, Client(base_url, api_key), entity, project, run_id)
    upload.anonymous = anonymous
    uploader = Uploader(upload)
    uploader.start()
    return uploader


def finish_online(uploader: Uploader, *, quiet: bool = False) -> bool:
    """At ``finish()``: wait ``$FULMEN_FINISH_TIMEOUT`` seconds (default 30) at most for the
    upload; if it is not complete, say which command completes it."""
    try:
        timeout = float(os.environ.get(FINISH_TIMEOUT_VARIABLE) or 30.0)
    except ValueError:
        timeout = 30.0
    done = uploader.finish(timeout)
    up = uploader.upload
    if up.entity and up.entity.startswith("anon-") and not quiet:
        print(
            f"fulmen: anonymous run (keep this link): {up.client.base_url.rstrip('/')}/api/v1"
            f"/entities/{up.entity}/projects/{_quote(up.project or '')}/runs/{up.run_id}",
            file=sys.stderr,
        )
    if up.refused and not quiet:
        first = up.refused_first or {}
        print(
            f"fulmen: the server refused {up.refused} record(s) of this run (the rest is stored; "
            f"the local run log keeps them all); the first: seq {first.get('seq')}, "
            f"{first.get('kind')} {first.get('field') or ''}: {first.get('reason')}",
            file=sys.stderr,
        )
    if not done and not quiet:
        why = f" ({uploader.error})" if uploader.error else ""
        print(
            f"fulmen: the server does not have all of this run yet{why}; to finish the upload "
            f"run: fulmen sync {uploader.upload.run_dir}",
            file=sys.stderr,
        )
    return done
