"""``init`` and ``Run``: one run's writer.

Every call that records something appends one frame to the run log with one ``os.write``
before it returns (see runlog.py): nothing is buffered in this process, so ``kill -9`` loses
nothing that a call returned from. ``log()`` has a fast path for the common case (flat dict, plain
numbers, keys and types seen before): one precompiled ``struct`` pack, a CRC, one write.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
import struct
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from fulmen.__about__ import __version__
from fulmen.track import runlog as rl
from fulmen.track._active import deactivate, state_for
from fulmen.track._artifacts import Artifact, ArtifactStore
from fulmen.track._config import Config, Summary, as_mapping, prepare
from fulmen.track._layout import auto_resume_id, find_run_dir, log_path, new_id
from fulmen.track._replay import RunData, SummaryState, parse_summary, replay
from fulmen.track._settings import Settings, check_display_name
from fulmen.track._system import ConsoleTee, Sampler, atomic_write
from fulmen.track._values import (
    DeferredTensor,
    check_key,
    convert,
    flatten,
    has_surrogate,
    type_code,
)

_perf = time.perf_counter
_uvarint, _svarint, _frame = rl.uvarint, rl.svarint, rl.frame
_HISTORY_LEAD = rl.LEAD_BYTE[rl.HISTORY]
_HISTORY_CRC = rl.LEAD_CRC[rl.HISTORY]
_crc32 = zlib.crc32
_pack_crc = struct.Struct("<I").pack
_write = os.write
_pack_seq = rl.SEQ.pack
LOCK_WAIT_S = 0.25
log = logging.getLogger("fulmen.track")


class Error(RuntimeError):
    """A run cannot do what was asked (its folder is unwritable, another process writes it, ...)."""


class AlertLevel(str, enum.Enum):
    """``run.alert(level=...)``: W&B's levels."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class StepWarning(UserWarning):
    """A row was logged at a step lower than an earlier one; it is kept (said once per run)."""


class _FastRow:
    """How ``log()``'s fast path writes the rows of one signature (keys and value types seen
    before): the schema id and, for the step delta (sequence - step) last seen, one struct that
    packs the whole payload (seq, the schema + step-delta prefix, runtime, the values) and the
    frame's head (lead byte and payload length, fixed per struct)."""

    __slots__ = ("delta", "fixed", "head", "pack", "prefix", "schema")

    def __init__(self, schema: bytes, fixed: str) -> None:
        self.schema = schema  # the schema id as a uvarint
        self.fixed = fixed  # the struct codes of the values
        self.delta: int | None = None  # the step delta ``prefix``, ``pack`` and ``head`` are for
        self.prefix = b""
        self.pack: Any = None
        self.head = b""

    def retarget(self, delta: int) -> None:
        """Point this entry at another step delta: its prefix, payload struct and frame head."""
        prefix = self.schema + _svarint(delta)
        packer = struct.Struct(f"<I{len(prefix)}sI{self.fixed}")
        self.delta, self.pack, self.prefix = delta, packer.pack, prefix
        self.head = _HISTORY_LEAD + _uvarint(packer.size)


class Run:
    """One run being recorded. Create it with ``init()``; see docs/track.md for every method."""

    def __init__(self, settings: Settings, config: Any = None) -> None:  # noqa: PLR0915
        self._settings = s = settings
        self.mode = s.mode
        initial = prepare("config", as_mapping(config))  # a bad config fails before any file
        root = s.dir / "fulmen"
        resumed_data, run_id, run_dir = self._claim(root, s)
        self.resumed = resumed_data is not None
        meta = resumed_data.meta if resumed_data is not None else {}
        self._id = run_id
        self._name = s.name or meta.get("name") or run_id
        self._project = s.project if s.project != "uncategorized" or not meta else meta["project"]
        self._entity = s.entity or meta.get("entity")
        self._group = s.group or meta.get("group")
        self._job_type = s.job_type or meta.get("job_type")
        self._tags = tuple(s.tags) or tuple(meta.get("tags", ()))
        self._notes = s.notes or meta.get("notes")
        self._root, self._run_dir, self._files = root, run_dir, run_dir / "files"
        self._path = log_path(run_dir)
        self._state = "running"
        self._preempting = False  # mark_preempting() was called
        self._lock = threading.RLock()
        self._closed = False
        self._warned_step = False
        self._said: set[str] = set()  # the topics _say_once has said
        self._capturing = True  # the console tee hands lines to the run log until a write fails
        self._extra: dict[str, Any] = {}
        self._watchers: list[Any] = []
        self._deferred: list[tuple[int, list[DeferredTensor]]] = []
        self._schema_ids: dict[tuple[tuple[str, str], ...], int] = {}
        self._fast_rows: dict[tuple[Any, ...], _FastRow] = {}
        self._summary_state = SummaryState()
        self.summary = Summary(self._summary_state, self._summary_changed)
        self.config = Config(self._config_changed)
        try:
            self._open_log(resumed_data)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._observe: Any = None
        self._refresh_fast()
        self.start_time = time.time()
        self._t0 = _perf() - self._rt0_us / 1e6  # runtime continues across resumes
        try:
            self._append_json(rl.RUN, self._start_record())
            if initial:
                self.config.update(initial, allow_val_change=self.resumed)
        except BaseException:  # a full disk at init: give the run's id back (its lock) and raise
            os.close(self._fd)
            os.close(self._lock_fd)
            raise
        self._write_metadata()
        self._point_latest()
        self._tees: list[ConsoleTee] = []
        self._output_fd = -1
        if s.console:
            self._start_console()
        self._sampler = Sampler(
            self._files,
            interval=s.stats_interval,
            collect_git=not (s.disable_git or s.anonymous),
            on_file=self._background_file,
            on_stats=self._stats,
        )
        self._sampler.start()
        self._uploader = None
        if self.mode == "online" and s.base_url:  # tails the run log; log() never waits for it
            from fulmen.track._upload import start_online

            self._uploader = start_online(
                run_dir, s.base_url, s.api_key, self._project, self._entity, self._id,
                bool(s.anonymous),
            )  # fmt: skip
        if s.mode_note and not s.silent:
            print(s.mode_note, file=sys.stderr)

    # --- set-up ---------------------------------------------------------------------------------

    def _claim(self, root: Path, s: Settings) -> tuple[RunData | None, str, Path]:
        """Create or find the run folder and take the run's lock (one writer per run id)."""
        try:
            (root / ".locks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Error(f"cannot create the run directory {root}: {exc.strerror or exc}") from exc
        if not os.access(root, os.W_OK):
            raise Error(f"cannot write to the run directory {root}: permission denied")
        run_id = s.id
        if run_id is None and s.resume == "auto":
            run_id = auto_resume_id(root)
        if run_id is None:
            run_id = new_id()
        lock_file = root / ".locks" / f"{run_id}.lock"
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise Error(f"cannot create the lock file {lock_file}: {exc.strerror}") from exc
        deadline = _perf() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if _perf() > deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise Error(
                        f"run {run_id!r} is being written by another live process (pid {holder});"
                        " two processes cannot write one run: give this one another id"
                    ) from None
                time.sleep(0.01)
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            existing = find_run_dir(root, run_id)
            data = self._resume_decision(existing, run_id, s.resume)
            if data is not None and existing is not None:
                return data, run_id, existing
            stamp = time.strftime("%Y%m%d_%H%M%S")
            run_dir = root / f"run-{stamp}-{run_id}"
            (run_dir / "files").mkdir(parents=True, exist_ok=True)
            return None, run_id, run_dir
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise Error(f"cannot write the run to {root}: {exc.strerror or exc}") from exc
            raise

    @staticmethod
    def _resume_decision(existing: Path | None, run_id: str, resume: str | None) -> RunData | None:
        if existing is None:
            if resume == "must":
                raise Error(f'resume="must" but there is no run with id {run_id!r} to resume')
            return None
        if resume in (None, "never"):
            raise Error(
                f"a run with id {run_id!r} already exists ({existing}); pass resume='allow' to "
                "continue it, or use another id"
            )
        return replay(log_path(existing))

    def _open_log(self, data: RunData | None) -> None:
        path = self._path
        try:
            if data is not None and data.corrupt and data.corrupt[-1].torn:
                os.truncate(path, data.corrupt[-1].offset)  # drop a torn tail before appending
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if data is None:
                _write(self._fd, rl.header())
        except OSError as exc:
            raise Error(f"cannot write the run log {path}: {exc.strerror or exc}") from exc
        if data is None:
            self._seq, self._step, self._last_written, self._rt0_us = 0, 0, -1, 0
            self._next_schema = 0
            return
        self._seq = data.last_seq
        self._step = data.max_step + 1
        self._last_written = data.last_step
        self._rt0_us = int(data.runtime * 1e6) + 1000
        self._next_schema = data.max_schema + 1
        self.config._data.update(data.config)
        self._summary_state = data.summary
        self.summary = Summary(data.summary, self._summary_changed)
        self._resumed_rows = len(data.rows)

    def _start_record(self) -> dict[str, Any]:
        import platform
        import socket

        anonymous = bool(self._settings.anonymous)
        return {
            "id": self._id,
            "name": self._name,
            "project": self._project,
            "entity": None if anonymous else self._entity,
            "group": self._group,
            "job_type": self._job_type,
            "tags": list(self._tags),
            "notes": self._notes,
            "resumed": self.resumed,
            "mode": self.mode,
            "time": self.start_time,
            "runtime": self._rt0_us / 1e6,
            "host": None if anonymous else socket.gethostname(),
            "user": None if anonymous else _user(),
            "program": _printable(sys.argv[0]) if sys.argv else None,
            "args": [_printable(a) for a in sys.argv[1:]],
            "python": platform.python_version(),
            "pid": os.getpid(),
            "fulmen": __version__,
        }

    def _write_metadata(self) -> None:
        meta = {
            "id": self._id,
            "name": self._name,
            "project": self._project,
            "entity": self._entity,
            "group": self._group,
            "tags": list(self._tags),
            "state": self._state,
            "mode": self.mode,
            "log": self._path.name,
            "updated": time.time(),
        }
        try:
            atomic_write(self._run_dir / "run.json", json.dumps(meta, indent=1))
        except OSError as exc:
            print(f"fulmen: could not update {self._run_dir / 'run.json'}: {exc}", file=sys.stderr)

    def _point_latest(self) -> None:
        link = self._root / "latest-run"
        tmp = self._root / f".latest-run.{os.getpid()}"
        try:
            if tmp.is_symlink():
                tmp.unlink()
            os.symlink(self._run_dir.name, tmp)
            os.replace(tmp, link)
        except OSError:
            pass  # a file system without symlinks: readers fall back to the newest folder

    def _start_console(self) -> None:
        try:
            self._output_fd = os.open(
                self._files / "output.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
        except OSError:
            return
        self._tees = [
            ConsoleTee(sys.stdout, 1, self._console),
            ConsoleTee(sys.stderr, 2, self._console),
        ]
        sys.stdout, sys.stderr = self._tees
        self._append_json(rl.FILE, {"path": "output.log", "type": "console", "size": 0})

    # --- writing --------------------------------------------------------------------------------

    def _emit(self, kind: int, payload: bytes) -> None:
        """Append one frame (call with the lock held, ``self._seq`` already advanced)."""
        self._write_frame(_frame(kind, payload))

    def _write_frame(self, fr: bytes) -> None:
        """Append one whole frame with one write (call with the lock held, ``self._seq`` already
        advanced to the frame's sequence). On failure the sequence is handed back, so the log
        stays a gapless sequence of whole frames, and Error says why."""
        try:
            n = _write(self._fd, fr)
        except OSError as exc:
            self._seq -= 1
            raise Error(
                f"could not write to the run log {self._path}: {exc.strerror}; what was logged "
                "before is intact"
            ) from exc
        if n != len(fr):
            self._short_write(n)

    def _short_write(self, n: int) -> None:
        # A partial frame (disk full): cut it off so the log stays a sequence of whole frames.
        self._seq -= 1
        with contextlib.suppress(OSError):  # readers skip a partial frame anyway
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - n)
        raise Error(f"could not write to the run log {self._path}: disk full? (short write)")

    def _append_json(self, kind: int, obj: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self._seq += 1
            self._emit(kind, rl.json_payload(self._seq, obj))

    def _config_changed(self, changed: dict[str, Any]) -> None:
        self._check_open()
        self._append_json(rl.CONFIG, changed)

    def _summary_changed(self, update: dict[str, Any], remove: list[str]) -> None:
        self._check_open()
        self._refresh_fast()
        self._append_json(rl.SUMMARY, {"update": update, "remove": remove})

    def _console(self, stream: int, text: str) -> None:
        # Called from inside the user's print(): it must never raise. When the run log cannot take
        # a line (disk full), capturing stops; the output still reaches the terminal.
        data = text.encode("utf-8", "replace")
        with self._lock:
            if self._closed or not self._capturing:
                return
            if self._output_fd >= 0:
                with contextlib.suppress(OSError):
                    _write(self._output_fd, data)
            self._seq += 1
            try:
                self._emit(rl.CONSOLE, _pack_seq(self._seq) + bytes((stream,)) + data)
                return
            except Error as exc:
                self._capturing = False
                failed = exc
        self._restore_streams()
        self._say_once(
            "console",
            f"fulmen: run {self._id!r} stopped capturing the console: {failed}. The program goes "
            "on and its output still reaches the terminal; nothing more of it is recorded",
        )

    def _restore_streams(self) -> None:
        """Put back sys.stdout and sys.stderr if they are still this run's tees."""
        if self._tees and sys.stdout is self._tees[0]:
            sys.stdout = self._tees[0].original
        if self._tees and sys.stderr is self._tees[1]:
            sys.stderr = self._tees[1].original

    def _say_once(self, topic: str, message: str, stacklevel: int = 4) -> None:
        """Say ``message`` once per run and topic: a RuntimeWarning and the fulmen.track logger.
        Never raises (it runs inside print() and finish()), even where warnings are errors."""
        if topic in self._said:
            return
        self._said.add(topic)
        log.warning(message)
        with contextlib.suppress(Exception):
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)  # the user's call

    def _stats(self, stats: dict[str, float]) -> None:
        try:
            self._append_json(rl.STATS, stats)
        except Error as exc:  # the sampler thread: a full disk ends its records, not the program
            self._say_background(exc)

    def _background_file(self, path: str, kind: str) -> None:
        try:
            self._file_written(path, kind)
        except Error as exc:
            self._say_background(exc)

    def _say_background(self, exc: Error) -> None:
        log.info("run %r: a background record was not written: %s", self._id, exc)

    def _file_written(self, path: str, kind: str) -> None:
        try:
            size = (self._files / path).stat().st_size
        except OSError:
            size = 0
        self._append_json(rl.FILE, {"path": path, "type": kind, "size": size})

    def _refresh_fast(self) -> None:
        """Pick what log()'s fast path does with a row's values for the summary: a plain
        ``dict.update`` of the last values, unless aggregates or user-set keys need more."""
        state = self._summary_state
        with self._lock:  # a watch hook may be adding a histogram from another thread
            self._fast = not self._extra and not self._closed
            plain = not (state.aggregating or state.overrides or state.removed)
            self._observe = state.last.update if plain else state.observe

    def _check_open(self) -> None:
        if self._closed:
            raise Error(f"run {self._id!r} is finished; start a new one with init()")

    # --- the public API -------------------------------------------------------------------------

    def log(
        self, data: dict[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        """Append one history row (or part of one: ``commit=False``, or an explicit ``step``)."""
        if self._fast and step is None and commit is None and type(data) is dict:
            vals = data.values()
            fast = self._fast_rows.get((*data, *map(type, vals)))
            if fast is not None:
                # One struct packs the whole payload; nothing here may block but the write.
                runtime_ms = int((_perf() - self._t0) * 1e3)
                lock = self._lock
                lock.acquire()
                try:  # one release, on every path (`with lock:` costs ~0.2 us more here)
                    seq = self._seq + 1
                    at = self._step
                    if seq - at != fast.delta:  # cached for another step delta
                        fast.retarget(seq - at)
                    try:
                        payload = fast.pack(seq, fast.prefix, runtime_ms, *vals)
                    except Exception:  # an int beyond 64 bits, ...: the general path handles it
                        pass
                    else:
                        self._seq = seq
                        self._write_frame(
                            fast.head + _pack_crc(_crc32(payload, _HISTORY_CRC)) + payload
                        )
                        self._step = at + 1
                        self._last_written = at
                        self._observe(data)
                        return
                finally:
                    lock.release()
        self._log_general(data, step, commit)

    def _log_general(self, data: Any, step: Any, commit: Any) -> None:  # noqa: PLR0912
        self._check_open()
        if not isinstance(data, Mapping):
            raise TypeError(f"log() takes a dict of {{key: value}}, got {type(data).__name__}")
        if step is not None:
            if isinstance(step, bool) or not hasattr(step, "__index__"):
                raise TypeError(f"step must be an int >= 0, got {type(step).__name__} {step!r}")
            step = step.__index__()
            if step < 0:
                raise ValueError(f"step must be an int >= 0, got {step}")
        if commit is not None and not isinstance(commit, bool):
            raise TypeError(f"commit must be True, False or None, got {commit!r}")
        errors: list[tuple[type[Exception], str]] = []
        row: dict[str, tuple[str, Any]] = {}
        deferred: list[DeferredTensor] = []
        for key, value in flatten(data):
            why = check_key(key)
            if why is not None:
                errors.append((ValueError if isinstance(key, str) else TypeError, why))
                continue
            try:
                converted = convert(key, value, self)  # self: media store their bytes
            except (TypeError, ValueError) as exc:
                errors.append((type(exc) if type(exc) is ValueError else TypeError, str(exc)))
                continue
            if isinstance(converted, DeferredTensor):
                deferred.append(converted)
            else:
                row[key] = converted
        if self._extra:
            with self._lock:
                extra, self._extra = self._extra, {}
            for key, value in extra.items():
                row.setdefault(key, ("j", value))
        with self._lock:
            self._check_open()
            at = self._place(step, commit)
            if row:
                self._write_row(rl.HISTORY, at, row)
        if row:
            self._summary_state.observe({k: v for k, (_, v) in row.items()})
        if deferred:
            self._defer(at, deferred)
        self._refresh_fast()
        if not errors and not deferred and type(data) is dict and len(row) == len(data):
            self._remember_fast(data, row)
        if errors:
            kind = errors[0][0]
            messages = "; ".join(msg for _, msg in errors)
            raise kind(f"{messages} (the other keys of the row were logged)")

    def _place(self, step: int | None, commit: bool | None) -> int:
        """The step this record goes to, moving the run's step (with the lock held)."""
        current = self._step
        if step is None:
            if commit is not False:
                self._step = current + 1
            return current
        if step >= current:
            self._step = step + 1 if commit else step
            return step
        if step == self._last_written:
            return step  # another part of the row just written
        if self.resumed:
            # Training resumed from an earlier checkpoint: supersede rows from this step on.
            self._seq += 1
            self._emit(rl.REWIND, rl.json_payload(self._seq, {"step": step}))
            self._step = step + 1 if commit else step
            return step
        if not self._warned_step:
            self._warned_step = True
            warnings.warn(
                f"run {self._id!r}: logged step {step} is lower than the current step "
                f"{current}; the row is kept as logged (said once per run)",
                StepWarning,
                stacklevel=4,
            )
        return step

    def _write_row(self, kind: int, step: int, row: dict[str, tuple[str, Any]]) -> None:
        columns = tuple((k, c) for k, (c, _) in row.items())
        sid = self._schema_ids.get(columns)
        if sid is None:
            sid = self._schema_ids[columns] = self._next_schema
            self._next_schema += 1
            self._seq += 1
            body = {"id": sid, "columns": [list(c) for c in columns]}
            self._emit(rl.SCHEMA, rl.json_payload(self._seq, body))
        codes = "".join(c for _, c in columns)
        fixed = rl.fixed_struct(codes)
        runtime_ms = min(int((_perf() - self._t0) * 1e3), 2**32 - 1)
        parts = [fixed.pack(runtime_ms, *(v for c, v in row.values() if c in rl.FIXED_CODES))]
        for code, value in row.values():
            if code == "s":
                raw = value.encode("utf-8", "surrogatepass")
            elif code == "j":
                raw = json.dumps(value, separators=(",", ":"), default=str).encode()
            else:
                continue
            parts += (_uvarint(len(raw)), raw)
        self._seq += 1
        head = _pack_seq(self._seq) + _uvarint(sid) + _svarint(self._seq - step)
        self._emit(kind, head + b"".join(parts))
        if kind == rl.HISTORY:
            self._last_written = step

    def _remember_fast(self, data: dict[str, Any], row: dict[str, tuple[str, Any]]) -> None:
        codes = []
        for key, value in data.items():
            code = type_code(value)
            if code is None or row[key][0] != code:
                return
            codes.append((key, code))
        sid = self._schema_ids[tuple(codes)]
        signature = (*data, *map(type, data.values()))
        self._fast_rows[signature] = _FastRow(_uvarint(sid), "".join(c for _, c in codes))

    def _defer(self, step: int, items: list[DeferredTensor]) -> None:
        # CUDA scalars: written as a PATCH of this row once their copies land (a helper thread
        # waits for them, never the caller).
        def land() -> None:
            row: dict[str, tuple[str, Any]] = {}
            for item in items:
                item.event.synchronize()
                try:
                    converted = convert(item.key, item.host)
                except TypeError:
                    continue
                if not isinstance(converted, DeferredTensor):
                    row[item.key] = converted
            with self._lock:
                if row and not self._closed:
                    self._write_row(rl.PATCH, step, row)
            self._summary_state.observe({k: v for k, (_, v) in row.items()})

        thread = threading.Thread(target=land, name="fulmen-deferred", daemon=True)
        thread.start()
        self._deferred.append((step, [*items]))
        self._deferred_threads = [*getattr(self, "_deferred_threads", []), thread]

    def _add_extra(self, key: str, value: Any) -> None:
        """Queue a value (a watch histogram) for the next history row."""
        with self._lock:
            self._extra[key] = value
            self._fast = False

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        summary: str | None = None,
        goal: str | None = None,
        step_sync: bool | None = None,
        hidden: bool = False,
    ) -> dict[str, Any]:
        """Declare how a metric is summarized and which metric is its x-axis."""
        self._check_open()
        if not isinstance(name, str) or not name or (name != "*" and check_key(name.rstrip("*"))):
            raise ValueError(
                f"define_metric: name must be a metric key (a trailing * allowed), got {name!r}"
            )
        if step_metric is not None and check_key(step_metric):
            raise ValueError(f"define_metric: step_metric {step_metric!r} is not a metric key")
        if goal not in (None, "minimize", "maximize"):
            raise ValueError(f"define_metric: goal must be 'minimize' or 'maximize', got {goal!r}")
        if summary is not None and "best" in summary.lower():
            # W&B's "best" is the min or the max by the goal; here it is summarized as that
            if goal is None:
                raise ValueError(
                    "define_metric(summary='best') needs goal='minimize' or 'maximize'"
                )
            best = "min" if goal == "minimize" else "max"
            summary = ",".join(
                best if m.strip().lower() == "best" else m for m in summary.split(",")
            )
        modes = parse_summary(summary)
        record = {
            "name": name,
            "step_metric": step_metric,
            "summary": modes,
            "goal": goal,
            "step_sync": step_sync,
            "hidden": bool(hidden),
        }
        self._summary_state.define(name, modes)
        self._refresh_fast()
        self._append_json(rl.METRIC, record)
        return record

    def alert(
        self,
        title: str,
        text: str,
        level: str | None = None,
        wait_duration: Any = None,
    ) -> None:
        """W&B's alert, minimal: no Slack or e-mail; a line "ALERT [level] title: text" in the
        run's console output (the run log, so the run page shows it) and on stderr."""
        self._check_open()
        level_name = str(getattr(level, "value", level) or "INFO").upper()
        if level_name not in ("INFO", "WARN", "ERROR"):
            raise ValueError(f"alert(level={level!r}): choose INFO, WARN or ERROR (AlertLevel)")
        if not isinstance(title, str) or not isinstance(text, str):
            raise TypeError("alert(title, text): both must be strings")
        line = f"ALERT [{level_name}] {title}: {text}\n"
        if self._tees:  # the console is captured: writing to stderr records it once
            sys.stderr.write(line)
            return
        self._console(2, line)
        if not self._settings.silent:
            sys.stderr.write(line)

    def mark_preempting(self) -> None:
        """Record that the run is about to be preempted (a RUN record with "preempting": true);
        resume it later with ``init(id=..., resume="allow")``."""
        self._check_open()
        self._preempting = True
        self._append_json(rl.RUN, {**self._start_record(), "rename": True, "preempting": True})

    def watch(
        self,
        models: Any,
        criterion: Any = None,
        log: str | None = "gradients",
        log_freq: int = 1000,
        idx: int | None = None,
        log_graph: bool = False,
    ) -> None:
        """Histograms of gradients and/or parameters every ``log_freq`` backward passes."""
        from fulmen.track._watch import Watcher

        self._check_open()
        for model in models if isinstance(models, (list, tuple)) else [models]:
            self._watchers.append(Watcher(self, model, log=log, log_freq=log_freq))

    def unwatch(self, models: Any = None) -> None:
        """Remove the hooks ``watch`` added (for ``models``, or all)."""
        wanted = (
            None if models is None else models if isinstance(models, (list, tuple)) else [models]
        )
        keep = []
        for watcher in self._watchers:
            if wanted is None or any(watcher.model is m for m in wanted):
                watcher.remove()
            else:
                keep.append(watcher)
        self._watchers = keep

    def save(self, path: str, base_path: str | None = None) -> None:
        """Copy the file ``path`` into the run's files/ folder (once, now) and record it, as
        W&B's ``save``: under its path relative to ``base_path`` (default: the working directory,
        which a relative ``path`` may not walk above); an absolute ``path`` without ``base_path``
        under its name. A file already in the folder is recorded where it is."""
        self._check_open()
        source = Path(os.path.abspath(path))
        files = self._files.resolve()
        if source.resolve().is_relative_to(files) and source.resolve().is_file():
            rel = source.resolve().relative_to(files).as_posix()  # already in the folder
        elif base_path is not None:
            rel = os.path.relpath(source, os.path.abspath(base_path))
            if _walks_up(rel):
                raise ValueError(f"save: {path!r} is not under base_path {base_path!r}")
        elif os.path.isabs(path):
            rel = source.name
        else:
            rel = os.path.normpath(path)
            if _walks_up(rel):
                raise ValueError(
                    f"save: {path!r} walks above base_path (the working directory); pass an "
                    "absolute path (copied under its name) or base_path="
                )
        if not source.is_file():
            raise ValueError(f"save: {path!r} is not a file")
        target = self._files / rel
        if not (target.exists() and target.samefile(source)):
            import shutil

            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        self._file_written(Path(rel).as_posix(), "user")

    def save_file(self, path: str, kind: str = "user") -> None:
        """Record a file written under ``run.dir`` (the run's files/ folder), by its path there.
        A path outside the folder (absolute, ``..``, a link out of it) is a ValueError: copy such
        a file in with ``save``."""
        self._check_open()
        rel = os.path.normpath(path) if isinstance(path, str) else ""
        inside = bool(rel) and not os.path.isabs(rel) and not _walks_up(rel)
        if inside:
            files = self._files.resolve()
            inside = (files / rel).resolve().is_relative_to(files)
        if not inside:
            raise ValueError(
                f"save_file: {path!r} is outside the run's files folder {self._files} (or is not "
                "a path); write the file under run.dir, or copy it in with run.save(path)"
            )
        self._file_written(Path(rel).as_posix(), kind)

    def log_artifact(
        self,
        artifact_or_path: Artifact | str,
        name: str | None = None,
        type: str | None = None,
        aliases: list[str] | None = None,
    ) -> Artifact:
        """Store ``artifact`` as a new version when its content changed; apply ``aliases``."""
        self._check_open()
        artifact = artifact_or_path
        if not isinstance(artifact, Artifact):
            path = Path(str(artifact_or_path))
            artifact = Artifact(name or path.name.replace(".", "-"), type or "unspecified")
            if path.is_dir():
                artifact.add_dir(str(path))
            else:
                artifact.add_file(str(path))
        manifest = self._artifact_store().save(artifact, aliases or [], run_id=self._id)
        staged = self._files / "artifacts"
        staged.mkdir(exist_ok=True)
        atomic_write(staged / f"{artifact.name}-{manifest['version']}.json", json.dumps(manifest))
        self._append_json(rl.ARTIFACT, _artifact_record(manifest, used=False))
        return artifact

    def use_artifact(self, artifact_or_name: Artifact | str, type: str | None = None) -> Artifact:
        """The artifact ``"name:alias"`` or ``"name:v3"`` (``"name"`` means ``"name:latest"``)."""
        self._check_open()
        if isinstance(artifact_or_name, Artifact):
            name = f"{artifact_or_name.name}:{artifact_or_name.version or 'latest'}"
        else:
            name = artifact_or_name
        artifact = self._artifact_store().load(name)
        if type is not None and artifact.type != type:
            raise ValueError(f"artifact {name!r} has type {artifact.type!r}, not {type!r}")
        self._append_json(rl.ARTIFACT, _artifact_record(artifact.manifest, used=True))
        return artifact

    def _artifact_store(self) -> ArtifactStore:
        return ArtifactStore(self._root / "artifacts")

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """End the run: final summary and exit record, fsync, release the lock. Idempotent."""
        state = "finished" if not exit_code else "failed"
        self._finish(exit_code or 0, state)

    def _finish(self, exit_code: int, state: str) -> None:
        if self._closed:
            return
        self._sampler.close()
        for tee in self._tees:
            tee.flush_rest()
        self._restore_streams()
        self.unwatch()
        for thread in getattr(self, "_deferred_threads", []):
            thread.join(timeout=10)
        from fulmen.track._media_store import close_media

        close_media(self)  # the PNGs of logged images encoded, and their FILE records written
        failed: list[tuple[str, Error]] = []  # finish() reports failed writes, never raises
        with self._lock:
            if self._extra:
                extra, self._extra = self._extra, {}
                try:
                    self._write_row(rl.HISTORY, self._step, {k: ("j", v) for k, v in extra.items()})
                except Error as exc:
                    failed.append(("the last watch histograms", exc))
            update = self._summary_state.result()
            exit_record = {"exit_code": exit_code, "state": state, "runtime": _perf() - self._t0}
            for kind, body, what in (
                (rl.SUMMARY, {"update": update, "remove": []}, "the final summary"),
                (rl.EXIT, exit_record, "the exit record"),
            ):
                try:
                    self._seq += 1
                    self._emit(kind, rl.json_payload(self._seq, body))
                except Error as exc:
                    failed.append((what, exc))
            self._closed = True
            self._fast = False
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            if self._output_fd >= 0:
                os.close(self._output_fd)
        self._state = state
        self._write_metadata()
        os.close(self._lock_fd)  # releases the lock: readers now see the run as ended
        if failed:
            what = ", ".join(w for w, _ in failed)
            if failed[-1][0] == "the exit record":
                what += "; readers will see the run as crashed"
            self._say_once(
                "finish",
                f"fulmen: could not write the end of run {self._id!r} ({what}): {failed[0][1]}. "
                "What was logged before is intact",
            )
        deactivate(self)
        if self._uploader is not None:  # a bounded wait, then the `fulmen sync` command
            from fulmen.track._upload import finish_online

            finish_online(self._uploader, quiet=self._settings.silent)

    # --- properties -----------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = check_display_name("name", value)
        self._append_json(rl.RUN, {**self._start_record(), "rename": True})

    @property
    def project(self) -> str:
        return self._project

    @property
    def entity(self) -> str | None:
        return self._entity

    @property
    def group(self) -> str | None:
        return self._group

    @property
    def job_type(self) -> str | None:
        return self._job_type

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @property
    def notes(self) -> str | None:
        return self._notes

    @property
    def dir(self) -> str:
        """The run's files/ folder: put files here to keep them with the run."""
        return str(self._files)

    @property
    def path(self) -> str:
        """``entity/project/id`` (``project/id`` without an entity)."""
        return "/".join(p for p in (self._entity, self._project, self._id) if p)

    @property
    def run_dir(self) -> Path:
        """The run folder ``<dir>/fulmen/run-<time>-<id>``."""
        return self._run_dir

    @property
    def log_path(self) -> Path:
        """The run log file."""
        return self._path

    @property
    def url(self) -> str | None:
        """The run's page on the server: None offline (there is no server to point at)."""
        return None

    @property
    def state(self) -> str:
        return self._state

    @property
    def step(self) -> int:
        """The step the next ``log()`` without ``step=`` goes to."""
        return self._step

    @property
    def disabled(self) -> bool:
        return False

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.finish()
        else:
            self._finish(130 if issubclass(kind, KeyboardInterrupt) else 1, state_for(kind))

    def __repr__(self) -> str:
        return f"<Run {self.path} ({self._state})>"


def _artifact_record(manifest: dict[str, Any], *, used: bool) -> dict[str, Any]:
    return {
        "name": manifest["name"],
        "type": manifest["type"],
        "version": manifest["version"],
        "digest": manifest["digest"],
        "aliases": manifest.get("aliases", []),
        "used": used,
        "entries": len(manifest["entries"]),
    }


def _walks_up(rel: str) -> bool:
    """True when the normalized relative path ``rel`` leaves its folder (``..`` or ``../x``)."""
    return rel == os.pardir or rel.startswith(os.pardir + os.sep)


def _printable(text: str) -> str:
    """An argument as valid Unicode: undecodable bytes (lone surrogates from os.fsdecode) are
    written as ``\\xff`` escapes (it names the file; nothing reads it back as a path)."""
    return os.fsencode(text).decode("utf-8", "backslashreplace") if has_surrogate(text) else text


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None
