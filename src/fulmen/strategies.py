"""``fulmen.strategies``: the strategies, where Lightning users look for them
(``import fulmen as pl; pl.strategies.DDPStrategy``). Defined in ``fulmen.train.strategy``."""

from fulmen.train.strategy import DDPStrategy, SingleDeviceStrategy, Strategy

__all__ = ["DDPStrategy", "SingleDeviceStrategy", "Strategy"]
