"""Where a Trainer stands: ``trainer.state`` with Lightning's enums and values.

``trainer.state.fn`` is the entry point that runs (``TrainerFn``: "fit", "validate", "test",
"predict"), ``trainer.state.stage`` the loop that runs inside it (``RunningStage``: "train",
"sanity_check", "validate", "test", "predict"), ``trainer.state.status`` where the run is
(``TrainerStatus``: "initializing", "running", "finished", "interrupted") and
``trainer.state.finished`` whether it ended well. The enums are strings, compared without regard to
case (``TrainerFn.FITTING == "fit"``), as Lightning's ``LightningEnum`` is.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

__all__ = ["RunningStage", "TrainerFn", "TrainerState", "TrainerStatus"]


class _StrEnum(str, Enum):
    """A string enum equal to its value in any case (``"FIT" == TrainerFn.FITTING``)."""

    def __eq__(self, other: object) -> bool:
        other = other.value if isinstance(other, Enum) else other
        return isinstance(other, str) and self.value.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.value.lower())

    def __str__(self) -> str:
        return str(self.value)


class TrainerStatus(_StrEnum):
    """Where the run is: before, during, after it ended well, or after an exception."""

    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"

    @property
    def stopped(self) -> bool:
        return self in (TrainerStatus.FINISHED, TrainerStatus.INTERRUPTED)


class TrainerFn(_StrEnum):
    """The entry point that runs: ``fit``, ``validate``, ``test`` or ``predict``."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class RunningStage(_StrEnum):
    """The loop that runs inside the entry point."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def evaluating(self) -> bool:
        return self in (RunningStage.VALIDATING, RunningStage.TESTING, RunningStage.SANITY_CHECKING)

    @property
    def dataloader_prefix(self) -> str | None:
        """ "train", "val", "test" or "predict": the name of the stage's dataloader hook."""
        if self in (RunningStage.SANITY_CHECKING, RunningStage.VALIDATING):
            return "val"
        return str(self.value)


@dataclasses.dataclass
class TrainerState:
    """``trainer.state``: the status, the entry point (``fn``) and the loop (``stage``)."""

    status: TrainerStatus = TrainerStatus.INITIALIZING
    fn: TrainerFn | None = None
    stage: RunningStage | None = None

    @property
    def finished(self) -> bool:
        """Did the last entry point end without an exception?"""
        return self.status == TrainerStatus.FINISHED
