"""The dependency rule (docs/install.md, "Packages, and who may import whom"), enforced.

Two checks: what a fresh interpreter has in ``sys.modules`` after importing a package (catches
indirect imports), and a static scan of every module's imports (catches imports hidden in functions
that the first check would never execute).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "fulmen"

# package -> names it may never import, anywhere (top level or inside a function)
FORBIDDEN = {
    "train": ("fulmen.track", "fulmen.loggers", "fulmen.server", "fulmen.cli"),
    "track": ("fulmen.train", "fulmen.loggers", "fulmen.server", "fulmen.cli"),
    "server": ("torch", "fulmen.train", "fulmen.loggers", "fulmen.cli"),
    "loggers": ("fulmen.server", "fulmen.cli"),
    "sweep": ("torch", "fulmen.train", "fulmen.loggers", "fulmen.server", "fulmen.cli"),
}
# package -> names it may import only inside functions (never at module import time). The server
# imports fulmen.sweep (it controls sweeps with the same logic as the local file); sweep never
# imports the server (FORBIDDEN above).
LAZY_ONLY = {"track": ("torch", "PIL", "numpy"), "sweep": ("optuna", "yaml"), "server": ("optuna",)}


def _imports(path: Path, root: Path = SRC) -> list[tuple[str, bool]]:
    """(absolute module name, imported at module top level?) for every import in ``path``, a
    module of the ``fulmen`` package whose folder is ``root``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("fulmen", *path.relative_to(root).with_suffix("").parts))
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    else:
        package = package.removesuffix(".__init__")
    found: list[tuple[str, bool]] = []
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        found += [(name, id(node) in top_level) for name in names]
    return found


def _hits(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_never_imports_what_the_architecture_forbids(package: str) -> None:
    offences = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in sorted((SRC / package).rglob("*.py"))
        for name, _ in _imports(path)
        if _hits(name, FORBIDDEN[package])
    ]
    assert offences == []


@pytest.mark.parametrize("package", sorted(LAZY_ONLY))
def test_package_imports_heavy_modules_only_inside_functions(package: str) -> None:
    offences = [
        f"{path.relative_to(SRC)} imports {name} at module level"
        for path in sorted((SRC / package).rglob("*.py"))
        for name, top in _imports(path)
        if top and _hits(name, LAZY_ONLY[package])
    ]
    assert offences == []


def test_the_scan_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    # The scanner is only as good as its parsing: prove it resolves the forms that hide imports.
    # The probe lives in a copy of the package layout, never in the source tree itself.
    module = tmp_path / "train" / "_probe_for_test.py"
    module.parent.mkdir()
    module.write_text("from ..track import x\ndef f():\n    import torch\n")
    assert _imports(module, root=tmp_path) == [("fulmen.track", True), ("torch", False)]


@pytest.mark.parametrize(
    "module", ["fulmen", "fulmen.track", "fulmen.server", "fulmen.cli", "fulmen.sweep"]
)
def test_importing_module_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_the_tracker_does_not_import_pillow() -> None:
    # media types import Pillow inside the functions that encode or read images
    code = "import sys, fulmen.track; print('PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("module", ["fulmen.track", "fulmen.sweep", "fulmen.cli", "fulmen.server"])
def test_importing_module_does_not_import_optuna(module: str) -> None:
    # Optuna (and its SQLAlchemy) load only when a sweep searches (bayes) or prunes (hyperband).
    code = f"import sys, {module}; print('optuna' in sys.modules, 'fulmen.sweep' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"
