"""``fulmen.utilities``: Lightning's ``pytorch_lightning.utilities`` names users import
(``rank_zero_only``, ``seed_everything``...). Defined in ``fulmen.train.utilities``."""

from fulmen.train.utilities import (
    rank_zero_info,
    rank_zero_only,
    rank_zero_warn,
    seed_everything,
)

__all__ = ["rank_zero_info", "rank_zero_only", "rank_zero_warn", "seed_everything"]
