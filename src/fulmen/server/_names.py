"""Validation of every name and path a request carries, before it reaches the store or a disk.

Names (entity, project, run id, metric key, artifact name) never become file-system paths: files
are stored by digest. Relative paths (a run's files, an artifact's entries) are checked anyway, the
way the path attacks on other trackers' artifact handlers demand (MLflow CVE-2023-6730,
CVE-2023-6831, CVE-2024-1560, CVE-2023-2780): no ``..`` or ``.`` segment, no absolute or UNC path,
no drive letter, no backslash, no control character, and the same once more after every level of
percent-decoding (``%2e%2e%2f``, ``%252e%252e%252f``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from fastapi import HTTPException

_NAME_BAD = re.compile(r"[/\\\x00-\x1f\x7f]")  # the client's rule (fulmen.track check_name)
_ALIAS = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ARTIFACT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEY_BAD = re.compile(r"[\x00-\x1f\x7f]")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_PATH = 1024


def bad(what: str, value: str, allowed: str) -> HTTPException:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return HTTPException(422, f"{what} {shown!r} is not valid: {allowed}")


def name(what: str, value: str) -> str:
    """An entity or project name, as the client allows them: 1 to 128 characters, no path
    separator or control character, not '.' or '..' (names are never file-system paths here)."""
    if not value or len(value) > 128 or _NAME_BAD.search(value) or value in (".", ".."):
        raise bad(what, value, "1 to 128 characters, no '/', '\\' or control characters")
    return value


def artifact_name(value: str) -> str:
    """As the client allows them (fulmen.track check_artifact_name)."""
    if not _ARTIFACT.match(value):
        raise bad("artifact name", value, "1 to 128 characters from A-Z a-z 0-9 _ . -")
    return value


def alias(value: str) -> str:
    """An artifact version (``v3``) or alias (``latest``, ``best``)."""
    if not _ALIAS.match(value) or value in (".", ".."):
        raise bad("version or alias", value, "1 to 64 characters from A-Z a-z 0-9 _ . -")
    return value


def run_id(value: str, what: str = "run id") -> str:
    """A run id (or another id with the same rule: ``what`` names it, "sweep id", "agent id")."""
    if not _RUN_ID.match(value) or value in (".", ".."):
        raise bad(what, value, "1 to 64 characters from A-Z a-z 0-9 _ . -")
    return value


def key(value: str) -> str:
    """A metric key (``train/loss`` is fine: keys are never paths)."""
    if not value or len(value) > 256 or _KEY_BAD.search(value):
        raise bad("metric key", value, "1 to 256 characters, no control characters")
    return value


def digest(value: str) -> str:
    if not _DIGEST.match(value):
        raise bad("digest", value, "a SHA-256 digest in 64 lowercase hex digits")
    return value


def relative_path(value: str) -> str:
    """A contained relative POSIX path; rejects traversal in every encoding (module docstring)."""
    seen = value
    for _ in range(4):  # every decoding level must be safe, not just the first
        _check_path(seen, value)
        decoded = unquote(seen)
        if decoded == seen:
            break
        seen = decoded
    else:
        raise bad("path", value, "too many levels of percent-encoding")
    return value


def _check_path(path: str, original: str) -> None:
    allowed = "a relative path inside the folder (no '..', '.', '\\', absolute or drive paths)"
    if not path or len(path) > MAX_PATH or _KEY_BAD.search(path):
        raise bad("path", original, allowed)
    if "\\" in path or path.startswith("/") or _DRIVE.match(path):
        raise bad("path", original, allowed)
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise bad("path", original, allowed)
