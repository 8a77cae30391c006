"""What a run records about its surroundings, off the caller's thread: installed packages, git
state, system metrics every ``stats_interval`` seconds; and the console tee. Also the atomic
rewrite that every metadata file goes through.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

METADATA_DELAY_S = 0.25


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(text)
    os.replace(tmp, path)


def requirements() -> str:
    """``name==version`` of every installed distribution, read from the names of the
    ``*.dist-info`` / ``*.egg-info`` folders on ``sys.path``: a few listdirs (importlib.metadata
    opens every METADATA file, tens of milliseconds of the training process's CPU)."""
    lines = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a missing folder
            continue
        for name in names:
            stem, dot, kind = name.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            dist, dash, version = stem.partition("-")
            version = version.partition("-")[0]  # egg-info: name-1.0-py3.11
            if dash and dist and version:
                lines.add(f"{dist}=={version}")
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def git_state(cwd: Path) -> tuple[dict[str, Any] | None, str]:
    """({commit, remote, dirty}, diff against HEAD) of the repository around ``cwd``, if any."""

    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return None, ""
    try:
        remote = git("config", "--get", "remote.origin.url").strip() or None
    except (OSError, subprocess.SubprocessError):
        remote = None
    try:
        diff = git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        diff = ""
    return {"commit": commit, "remote": remote, "dirty": bool(diff)}, diff


class Sampler(threading.Thread):
    """The run's background thread: metadata once, then system metrics every ``interval`` s."""

    def __init__(
        self,
        files: Path,
        *,
        interval: float,
        collect_git: bool,
        on_file: Callable[[str, str], None],
        on_stats: Callable[[dict[str, float]], None],
    ) -> None:
        super().__init__(name="fulmen-sampler", daemon=True)
        self.files, self.interval, self.collect_git = files, interval, collect_git
        self.on_file, self.on_stats = on_file, on_stats
        self.stopped = threading.Event()
        self.metadata_done = False
        self._last_cpu = (time.monotonic(), _cpu_seconds())

    def run(self) -> None:
        # Wait a moment first: starting heavy work at once would hold the GIL while init()
        # returns (Thread.start waits for the thread), costing init() milliseconds.
        if self.stopped.wait(METADATA_DELAY_S):
            return
        self._metadata_once()
        while self.interval > 0 and not self.stopped.wait(self.interval):
            self.on_stats(self.sample())

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; a run that ended before the thread got to them still gets its
        metadata and one system-metrics sample, so every run has them, however short."""
        self.stopped.set()
        if self.is_alive():
            self.join(timeout)
        if not self.metadata_done and not self.is_alive():
            self._metadata_once(final=True)
        if self.interval > 0:
            self.on_stats(self.sample())

    def _metadata_once(self, *, final: bool = False) -> None:
        try:
            self._metadata(final=final)
        except Exception as exc:  # metadata is best effort; never kill the sampler for it
            print(f"fulmen: could not record run metadata: {exc}", file=sys.stderr)
        finally:
            self.metadata_done = True

    def _metadata(self, *, final: bool = False) -> None:
        if self.stopped.is_set() and not final:
            return
        (self.files / "requirements.txt").write_text(requirements())
        self.on_file("requirements.txt", "requirements")
        if not self.collect_git or (self.stopped.is_set() and not final):
            return
        state, diff = git_state(Path.cwd())
        if state is None:
            return
        atomic_write(self.files / "git.json", json.dumps(state, indent=1))
        self.on_file("git.json", "git")
        if diff:
            (self.files / "diff.patch").write_text(diff)
            self.on_file("diff.patch", "diff")

    def sample(self) -> dict[str, float]:
        now, cpu = time.monotonic(), _cpu_seconds()
        then, cpu_then = self._last_cpu
        self._last_cpu = (now, cpu)
        stats = {"cpu": round(100.0 * (cpu - cpu_then) / max(now - then, 1e-9), 2)}
        rss = _rss_bytes()
        if rss is not None:
            stats["rss_mb"] = round(rss / 2**20, 2)
        stats.update(_gpu_stats())
        return stats


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _gpu_stats() -> dict[str, float]:
    # Only when the program already uses torch with CUDA: the sampler never imports torch itself.
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    stats: dict[str, float] = {}
    for i in range(torch.cuda.device_count()):
        stats[f"gpu.{i}.memory_allocated_mb"] = round(torch.cuda.memory_allocated(i) / 2**20, 2)
        with contextlib.suppress(Exception):  # needs pynvml; memory figures are still useful
            stats[f"gpu.{i}.util"] = float(torch.cuda.utilization(i))
    return stats


class ConsoleTee:
    """A text stream that writes through to the original one and hands complete lines to the
    run (output.log and CONSOLE records). Partial lines wait for their newline or ``flush_rest``.
    """

    def __init__(self, original: TextIO, stream: int, sink: Callable[[int, str], None]) -> None:
        self.original, self.stream, self._sink = original, stream, sink
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        n = self.original.write(text)
        with self._lock:
            self._pending += text
            if "\n" not in text:
                return n
            done, _, self._pending = self._pending.rpartition("\n")
        self._sink(self.stream, done + "\n")
        return n

    def flush_rest(self) -> None:
        with self._lock:
            rest, self._pending = self._pending, ""
        if rest:
            self._sink(self.stream, rest)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    def writable(self) -> bool:
        return True

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    @property
    def encoding(self) -> str:
        return getattr(self.original, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:
        return getattr(self.original, "errors", None)

    @property
    def buffer(self) -> Any:
        return getattr(self.original, "buffer", None)
