"""Where logged media live: content-addressed files under the run's ``files/media/``.

Durability without paying for PNG encoding on the caller's thread: ``log()`` writes an image's
pixels as ``<final>.npy`` (a NumPy ``.npy`` file: uint8, H x W or H x W x C) with plain
``os.write`` calls before it returns, so ``kill -9`` right after ``log()`` loses nothing. One
encoder thread per run turns each ``.npy`` into the final PNG (Pillow's default compression),
swaps it in with ``os.replace``, removes the ``.npy`` and appends a FILE record with the PNG's
size and SHA-256. ``Run.finish()`` waits for the encoder. A run killed before that leaves
``.npy`` files: ``finalize_pending`` (called by the uploader, ``fulmen sync``, ``Api`` and the
next writer of the run) encodes them the same way. Already encoded media (a PNG or JPEG file
given by path, WAV, GIF, HTML, table JSON) are written as they are, on the caller's thread.

File names are the content's SHA-256 (the first 32 hex digits), so the same content logged twice
is stored once. Pillow is imported only by the encoder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

_log = logging.getLogger("fulmen.track")
PENDING_SUFFIX = ".npy"
MEDIA_DIR = "media"
DIGEST_CHARS = 32


def digest_name(sha256: str) -> str:
    """The file-name part of a content address."""
    return sha256[:DIGEST_CHARS]


_made: set[Path] = set()


def write_all(path: Path, chunks: list[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` (created or replaced) with ``os.write``: handed to the OS,
    so it survives the process being killed (not a power cut: no fsync, as the run log)."""
    if path.parent not in _made:
        path.parent.mkdir(parents=True, exist_ok=True)
        _made.add(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            while view:
                n = os.write(fd, view)
                view = view[n:]
    finally:
        os.close(fd)
    os.replace(tmp, path)  # a reader never sees a half-written file under the final name


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (format 1.0) header of a C-ordered uint8 array of ``shape``."""
    text = "{'descr': '|u1', 'fortran_order': False, 'shape': %r, }" % (shape,)  # noqa: UP031
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


def read_npy(path: Path) -> Any | None:
    """The array of a pending ``.npy`` file, or None when it is torn or not ours."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        return None
    return array


def encode_image(array: Any, fmt: str) -> bytes:
    """PNG (Pillow's default level) or JPEG bytes of a uint8 H x W (x C) array."""
    import io

    from PIL import Image as PILImage

    picture = PILImage.fromarray(array if array.ndim == 2 or array.shape[2] != 1 else array[..., 0])
    out = io.BytesIO()
    if fmt == "png":
        picture.save(out, format="PNG")
    else:
        if picture.mode == "RGBA":
            picture = picture.convert("RGB")
        picture.save(out, format="JPEG", quality=95)
    return out.getvalue()


def finalize_file(pending: Path) -> tuple[str, int, str] | None:
    """Encode one pending ``.npy`` into its final file; (final name, size, sha256) or None."""
    final = pending.with_name(pending.name[: -len(PENDING_SUFFIX)])
    array = read_npy(pending)
    if array is None:
        pending.unlink(missing_ok=True)  # torn by a kill during log(): log() had not returned
        return None
    data = encode_image(array, "jpeg" if final.suffix in (".jpg", ".jpeg") else "png")
    write_all(final, [data])
    pending.unlink(missing_ok=True)
    return final.name, len(data), hashlib.sha256(data).hexdigest()


def finalize_pending(files_dir: Path) -> list[str]:
    """Encode every pending image of a run's ``files/`` folder (a run killed before its encoder
    finished); the paths (relative to ``files/``) of every media file, pending ones included."""
    media = files_dir / MEDIA_DIR
    if not media.is_dir():
        return []
    for pending in sorted(media.rglob("*" + PENDING_SUFFIX)):
        with contextlib.suppress(OSError):
            finalize_file(pending)
    return sorted(
        p.relative_to(files_dir).as_posix()
        for p in media.rglob("*")
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(PENDING_SUFFIX)
    )


class MediaSink:
    """One run's media writer: what ``log()`` calls to store a value's bytes."""

    def __init__(self, run: Any) -> None:
        self._run = run
        self.files: Path = Path(run.dir)
        finalize_pending(self.files)  # leftovers of an earlier attempt of this run
        self._known: set[str] = set()
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def has(self, relative: str) -> bool:
        """Whether ``relative`` is stored already (or on its way): then nothing is written."""
        if relative in self._known:
            return True
        target = self.files / relative
        if target.exists() or target.with_name(target.name + PENDING_SUFFIX).exists():
            self._known.add(relative)
            return True
        return False

    def put_bytes(self, relative: str, data: bytes, sha256: str) -> None:
        """Store already encoded bytes under ``relative`` now, and record the file."""
        if self.has(relative):
            return
        write_all(self.files / relative, [data])
        self._known.add(relative)
        self._record(relative, "media", len(data), sha256)

    def put_pixels(self, relative: str, header: bytes, array: Any) -> None:
        """Store an image's pixels durably now (``<relative>.npy``); the encoder makes the PNG."""
        if self.has(relative):
            return
        pending = self.files / (relative + PENDING_SUFFIX)
        write_all(pending, [header, memoryview(array).cast("B")])
        self._known.add(relative)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._encode_loop, name="fulmen-media", daemon=True
                )
                self._thread.start()
        self._queue.put(pending)

    def _encode_loop(self) -> None:
        worker = _start_worker()
        try:
            while True:
                pending = self._queue.get()
                if pending is None:
                    self._queue.task_done()
                    return
                try:
                    done = _encode_in(worker, pending)
                except Exception:  # a failed encode leaves the .npy for finalize_pending
                    _log.exception("could not encode %s", pending)
                    done = None
                if done is not None:
                    relative = pending.with_name(done[0]).relative_to(self.files).as_posix()
                    self._record(relative, "media", done[1], done[2])
                self._queue.task_done()
        finally:
            if worker is not None:
                _stop_worker(worker)

    def _record(self, relative: str, kind: str, size: int, sha256: str) -> None:
        from fulmen.track import runlog as rl

        # the uploader sends the files that FILE records name
        self._run._append_json(
            rl.FILE, {"path": relative, "type": kind, "size": size, "sha256": sha256}
        )

    def drain(self) -> None:
        """Wait until the images logged so far are encoded (the run stays open)."""
        self._queue.join()

    def close(self) -> None:
        """Wait until every pending image is encoded (``Run.finish``)."""
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()
            self._thread = None
            for pending in sorted((self.files / MEDIA_DIR).rglob("*" + PENDING_SUFFIX)):
                done = finalize_file(pending)  # what a failed encode left: last chance here
                if done is not None:
                    relative = pending.with_name(done[0]).relative_to(self.files).as_posix()
                    self._record(relative, "media", done[1], done[2])


# The encoder runs in a helper process: Pillow holds the GIL while it deflates into memory, which
# would stall the training thread for the whole encoding (tens of ms per frame).
_WORKER_CODE = "from fulmen.track._media_store import worker_main; worker_main()"


def _start_worker() -> Any:
    import subprocess
    import sys

    import fulmen

    # the child imports this module from where this process found it (a source checkout too)
    root = str(Path(fulmen.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
    except OSError:
        _log.warning("could not start the media encoder process; encoding in a thread")
        return None


def _encode_in(worker: Any, pending: Path) -> tuple[str, int, str] | None:
    if worker is not None and worker.poll() is None:
        try:
            worker.stdin.write(str(pending) + "\n")
            answer = worker.stdout.readline().split("\t")
        except (OSError, ValueError):  # the worker is gone: do it here
            answer = []
        if answer and answer[0] == "ok" and len(answer) == 4:
            return answer[1], int(answer[2]), answer[3].strip()
        if answer and answer[0] == "torn":
            return None
    return finalize_file(pending) if pending.exists() else None


def _stop_worker(worker: Any) -> None:
    import subprocess

    with contextlib.suppress(OSError):
        worker.stdin.close()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    worker.stdout.close()


def worker_main() -> None:
    """The encoder process: one pending path per line in; ``ok name size sha256`` or ``torn``
    (or ``error``) per line out."""
    import sys

    for line in sys.stdin:
        try:
            done = finalize_file(Path(line.rstrip("\n")))
        except Exception as exc:
            print(f"error\t{exc}", flush=True)
            continue
        print("torn" if done is None else "ok\t%s\t%d\t%s" % done, flush=True)  # noqa: UP031


def sink_of(run: Any) -> MediaSink:
    """The run's media sink, made on first use."""
    sink: MediaSink | None = getattr(run, "_media_sink", None)
    if sink is None:
        sink = MediaSink(run)
        run._media_sink = sink
    return sink


def close_media(run: Any) -> None:
    """``Run.finish``: the encoder's work done, before the exit record."""
    sink: MediaSink | None = getattr(run, "_media_sink", None)
    if sink is not None:
        sink.close()
