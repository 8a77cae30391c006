"""The browser tests' fixtures: one chromium a test module (``browser``) and a fresh page a test
(``page``: 1400 x 1000, its dialogs dismissed and kept in ``page.dialogs``, script errors and
console errors but a missing favicon or a 404 kept in ``page.problems``). A module that wants
other checks on its pages defines its own ``page``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import ARTIFACTS, CHROMIUM, FLAGS, browser_or_skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "favicon" not in m.text and "404" not in m.text
            else None
        ),
    )
    pg.problems = problems
    yield pg
    context.close()
