"""fulmen.loggers: the Logger protocol, CSVLogger, TensorBoardLogger and WandbLogger (the only
bridge between ``fulmen.train`` and ``fulmen.track``).

The Logger protocol and CSVLogger are defined in ``fulmen.train.loggers`` (the Trainer's default
logger must exist without the tracker) and re-exported here.
"""

from fulmen.loggers.wandb import WandbLogger
from fulmen.train.loggers import CSVLogger, Logger, TensorBoardLogger

__all__: list[str] = ["CSVLogger", "Logger", "TensorBoardLogger", "WandbLogger"]
