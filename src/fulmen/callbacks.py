"""``fulmen.callbacks``: the built-in callbacks, where Lightning users look for them
(``import fulmen as pl; pl.callbacks.ModelCheckpoint``). Defined in ``fulmen.train.callbacks``."""

from fulmen.train.callbacks import (
    BasePredictionWriter,
    BatchSizeFinder,
    Callback,
    EarlyStopping,
    GradientAccumulationScheduler,
    LearningRateFinder,
    LearningRateMonitor,
    ModelCheckpoint,
    ModelSummary,
    OnExceptionCheckpoint,
    ProgressBar,
    RichProgressBar,
    Timer,
    TQDMProgressBar,
)

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
