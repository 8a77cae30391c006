"""fulmen.train: the training framework: Trainer, LightningModule, callbacks, precision, strategies.

Imports torch. Never imports ``fulmen.track``, ``fulmen.loggers`` or ``fulmen.server``: loggers
reach the tracker, and the Trainer only knows the Logger protocol (``fulmen.train.loggers``).
"""

from fulmen.train.callback import Callback
from fulmen.train.loggers import CSVLogger, Logger
from fulmen.train.module import LightningDataModule, LightningModule
from fulmen.train.precision import Precision
from fulmen.train.strategy import DDPStrategy, SingleDeviceStrategy, Strategy
from fulmen.train.trainer import Trainer
from fulmen.train.utilities import rank_zero_only, seed_everything

__all__ = [
    "CSVLogger",
    "Callback",
    "DDPStrategy",
    "LightningDataModule",
    "LightningModule",
    "Logger",
    "Precision",
    "SingleDeviceStrategy",
    "Strategy",
    "Trainer",
    "rank_zero_only",
    "seed_everything",
]
