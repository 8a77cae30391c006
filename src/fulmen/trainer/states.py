"""``fulmen.trainer.states``: Lightning's ``TrainerFn``, ``RunningStage``, ``TrainerStatus`` and
``TrainerState`` (defined in ``fulmen.train.states``)."""

from fulmen.train.states import RunningStage, TrainerFn, TrainerState, TrainerStatus

__all__ = ["RunningStage", "TrainerFn", "TrainerState", "TrainerStatus"]
