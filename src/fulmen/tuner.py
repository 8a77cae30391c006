"""``fulmen.tuner``: the Tuner, where Lightning users look for it (``pl.tuner.Tuner``).
Defined in ``fulmen.train.tuner``."""

from fulmen.train.tuner import BatchSizeFinder, LearningRateFinder, Tuner

__all__ = ["BatchSizeFinder", "LearningRateFinder", "Tuner"]
