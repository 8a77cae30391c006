"""``fulmen.utilities.exceptions``: where Lightning users import ``MisconfigurationException``."""

from fulmen.train.utilities import MisconfigurationException

__all__ = ["MisconfigurationException"]
