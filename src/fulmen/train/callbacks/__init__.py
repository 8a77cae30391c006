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
from fulmen.train.callbacks._on_exception import OnExceptionCheckpoint
from fulmen.train.callbacks._prediction_writer import BasePredictionWriter
from fulmen.train.callbacks._progress import ProgressBar, RichProgressBar, TQDMProgressBar
from fulmen.train.tuner import BatchSizeFinder, LearningRateFinder

__all__ = [
    "BasePredictionWriter",
    "BatchSizeFinder",
    "Callback",
    "EarlyStopping",
    "GradientAccumulationScheduler",
    "LearningRateFinder",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ModelSummary",
    "OnExceptionCheckpoint",
    "ProgressBar",
    "RichProgressBar",
    "TQDMProgressBar",
    "Timer",
]
