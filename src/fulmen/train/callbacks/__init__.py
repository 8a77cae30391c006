"""The built-in callbacks (re-exported as ``fulmen.callbacks``).

Each is an ordinary Callback: it only overrides hooks of ``fulmen.train.callback.HOOKS``.
"""

from fulmen.train.callback import Callback
from fulmen.train.callbacks._early_stopping import EarlyStopping
from fulmen.train.callbacks._misc import (
    GradientAccumulationScheduler,
    LearningRateMonitor,
    ModelSummary,
    Timer,
)
from fulmen.train.callbacks._model_checkpoint import ModelCheckpoint
from fulmen.train.callbacks._progress import ProgressBar, RichProgressBar, TQDMProgressBar

__all__ = [
    "Callback",
    "EarlyStopping",
    "GradientAccumulationScheduler",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ModelSummary",
    "ProgressBar",
    "RichProgressBar",
    "TQDMProgressBar",
    "Timer",
]
