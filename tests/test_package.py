"""The package's public surface: version, lazy names, ``__all__`` everywhere."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import fulmen


def public_modules() -> list[str]:
    """Every importable module of fulmen whose dotted name has no private (``_``) part."""
    names = ["fulmen"]
    for info in pkgutil.walk_packages(fulmen.__path__, prefix="fulmen."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def test_version_is_a_release_string() -> None:
    major, minor, patch = fulmen.__version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


@pytest.mark.parametrize(
    "package", ["fulmen", "fulmen.train", "fulmen.track", "fulmen.loggers", "fulmen.server"]
)
def test_every_package_declares_its_public_api(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert isinstance(exported, list)
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []


def test_every_lazy_name_is_exported() -> None:
    assert set(fulmen._LAZY) <= set(fulmen.__all__)


def test_unknown_attribute_is_a_clear_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'fulmen' has no attribute 'Trainerr'"):
        _ = fulmen.Trainerr  # type: ignore[attr-defined]


def test_public_modules_are_found() -> None:
    assert {"fulmen.track", "fulmen.train", "fulmen.server.app", "fulmen.cli"} <= set(
        public_modules()
    )
