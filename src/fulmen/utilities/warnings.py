"""``fulmen.utilities.warnings``: where Lightning users import ``PossibleUserWarning``."""

from fulmen.train.utilities import PossibleUserWarning

__all__ = ["PossibleUserWarning"]
