"""What the browser tests share: Debian's chromium (``CHROMIUM``) driven by Playwright, its flags,
where screenshots go (``ARTIFACTS``), and ``browser_or_skip``: Playwright's launcher, or a skip
(locally) / a failure (under ``CI=true``) that says what is missing. The fixtures are in
conftest.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def browser_or_skip() -> Any:
    """Playwright's chromium launcher, or a skip (locally) / a failure (CI) saying what lacks."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is None and not os.path.exists(CHROMIUM):
        problem = f"{CHROMIUM} is missing (apt-get install chromium; scripts/test does it)"
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    return sync_playwright
