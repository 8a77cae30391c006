"""fulmen: organized PyTorch training plus a self-hosted, offline-first experiment tracker.

The Lightning-style public names (``Trainer``, ``LightningModule``, ...) are imported lazily, on
first use, so that ``import fulmen`` stays cheap and never imports torch by itself: a script that
only tracks experiments pays nothing for the training framework.

Porting promise: typical PyTorch Lightning code runs after ``import fulmen as pl``, and typical
wandb code after ``import fulmen.track as wandb``.
"""

from __future__ import annotations

import importlib

from fulmen import _logging
from fulmen.__about__ import __version__

_logging.configure_from_environment()

TYPE_CHECKING = False  # `typing` costs ~10 ms to import; `import fulmen` does not need it
if TYPE_CHECKING:
    from typing import Any

# Public name -> the module that defines it. Each issue that lands a Lightning-style name adds it
# here (and to __all__); nothing is imported until the name is first used.
_LAZY: dict[str, str] = {
    "Callback": "fulmen.train.callback",
    "LightningDataModule": "fulmen.train.module",
    "LightningModule": "fulmen.train.module",
    "Trainer": "fulmen.train.trainer",
    "seed_everything": "fulmen.train.utilities",
}
# Submodules reachable as attributes without an import, as in Lightning (``pl.callbacks.X``).
_SUBMODULES = (
    "callbacks",
    "cli",
    "lightning_cli",
    "loggers",
    "strategies",
    "trainer",
    "tuner",
    "utilities",
    "train",
    "track",
)

__all__ = [  # plus every name of _LAZY (a test checks)
    "Callback",
    "LightningDataModule",
    "LightningModule",
    "Trainer",
    "__version__",
    "seed_everything",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"fulmen.{name}")
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fulmen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
