"""``fulmen.trainer``: where Lightning users import the Trainer's states from
(``from fulmen.trainer.states import TrainerFn``, as ``pytorch_lightning.trainer.states``).
Defined in ``fulmen.train.trainer`` and ``fulmen.train.states``."""

from fulmen.train.trainer import Trainer

from . import states

__all__ = ["Trainer", "states"]
