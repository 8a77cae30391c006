"""Every public name, CLI command and HTTP endpoint is documented in docs/ (or the README)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import click

from fulmen.cli import cli
from fulmen.server import create_app
from tests.test_package import public_modules

ROOT = Path(__file__).resolve().parent.parent


def documentation() -> str:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert pages, "docs/ has no pages"
    return "\n".join(p.read_text() for p in [ROOT / "README.md", *pages])


def test_docs_index_links_every_page() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    unlinked = sorted(p for p in pages - {"index.md"} if f"({p})" not in index)
    assert unlinked == []


def test_every_public_name_is_documented() -> None:
    text = documentation()
    missing = [
        f"{module}.{name}"
        for module in public_modules()
        for name in getattr(importlib.import_module(module), "__all__", [])
        if not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
    ]
    assert missing == []


def _commands(group: click.Group, prefix: str) -> list[str]:
    found = []
    for name, command in group.commands.items():
        found.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix} {name}")
    return found


def test_every_cli_command_is_documented() -> None:
    text = documentation()
    missing = [c for c in _commands(cli, "fulmen") if c not in text]
    assert missing == []


def test_every_http_endpoint_is_documented() -> None:
    text = documentation()
    paths = create_app().openapi()["paths"]
    missing = [
        f"{method.upper()} {path}"
        for path, methods in paths.items()
        for method in methods
        if f"{method.upper()} {path}" not in text
    ]
    assert missing == []


def test_the_check_catches_an_undocumented_name() -> None:
    # guard against a regex that matches everything
    assert not re.search(r"(?<![\w.])NoSuchPublicName(?!\w)", documentation())
