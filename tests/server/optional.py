"""Optional test dependencies: a skip on a developer's machine, a failure in CI.

A test that needs an extra (schemathesis, pyarrow) calls :func:`require`; where it is missing the
test is skipped locally, but with ``CI=true`` it fails, so CI never passes by skipping silently
(as the browser tests do, tests/e2e/test_dashboard_browser.py)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(module: str) -> ModuleType:
    """``module`` imported, or a skip (locally) / a failure (CI) naming what is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not installed ({exc}); pip install -e '.[dev]'"
        if in_ci():
            pytest.fail(f"this test must run in CI: {message}")
        pytest.skip(message)
