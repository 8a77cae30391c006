"""``fulmen.utilities``: Lightning's ``pytorch_lightning.utilities`` names users import
(``rank_zero_only``, ``seed_everything``, ``MisconfigurationException``...), also at Lightning's
paths ``fulmen.utilities.exceptions`` and ``fulmen.utilities.warnings``. Defined in
``fulmen.train.utilities``."""

from fulmen.train.utilities import (
    MisconfigurationException,
    PossibleUserWarning,
    rank_zero_info,
    rank_zero_only,
    rank_zero_warn,
    seed_everything,
)

__all__ = [
    "MisconfigurationException",
    "PossibleUserWarning",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "seed_everything",
]
