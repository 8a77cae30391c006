"""Paths the user gives the Trainer and ModelCheckpoint: ``~`` expanded, remote URLs via fsspec.

A path with a protocol other than ``file`` (``s3://``, ``gs://``, ``memory://``...) goes through
fsspec, as in Lightning (fsspec comes with torch; a protocol needs its own package, e.g. s3fs).
Local paths are expanded (``~``) and used with ``os`` directly: the common case costs nothing.
"""

from __future__ import annotations

import os
from typing import IO, Any


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Does ``path`` name a file system other than the local one (``"memory://x"``)?"""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def expand(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, ``~`` expanded (remote URLs unchanged)."""
    text = os.fspath(path)
    return text if is_remote(text) else os.path.expanduser(text)


def _fs(path: str) -> Any:
    import fsspec  # type: ignore[import-untyped]  # (no type information)

    return fsspec.core.url_to_fs(path)[0]


def isfile(path: str) -> bool:
    return _fs(path).isfile(path) if is_remote(path) else os.path.isfile(path)


def remove(path: str) -> None:
    if is_remote(path):
        _fs(path).rm(path)
    else:
        os.remove(path)


def makedirs(path: str) -> None:
    if is_remote(path):
        _fs(path).makedirs(path, exist_ok=True)
    else:
        os.makedirs(path, exist_ok=True)


def open_file(path: str, mode: str) -> IO[bytes]:
    """A remote file opened with fsspec (the caller writes or reads it, then closes it)."""
    handle: IO[bytes] = _fs(path).open(path, mode)
    return handle


def isdir(path: str) -> bool:
    return bool(_fs(path).isdir(path)) if is_remote(path) else os.path.isdir(path)


def listdir(path: str) -> list[str]:
    """The names (not paths) in the folder ``path``."""
    if not is_remote(path):
        return os.listdir(path)
    return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in _fs(path).ls(path, detail=False)]


def open_text(path: str, mode: str) -> IO[str]:
    """``path`` opened as UTF-8 text without newline translation (CSV's rule), local or remote."""
    if not is_remote(path):
        return open(path, mode, newline="", encoding="utf-8")
    handle: IO[str] = _fs(path).open(path, mode, newline="", encoding="utf-8")
    return handle
