"""``fulmen.callbacks``: the built-in callbacks, where Lightning users look for them
(``import fulmen as pl; pl.callbacks.ModelCheckpoint``). Defined in ``fulmen.train.callbacks``."""

from fulmen.train.callbacks import (
    Callback,
    EarlyStopping,
    GradientAccumulationScheduler,
    LearningRateMonitor,
    ModelCheckpoint,
    ModelSummary,
    ProgressBar,
    RichProgressBar,
    Timer,
    TQDMProgressBar,
)

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
