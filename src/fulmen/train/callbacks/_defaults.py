"""The callbacks a Trainer adds by itself, and their order."""

from __future__ import annotations

from typing import Any

from fulmen.train.callback import Callback
from fulmen.train.callbacks._misc import GradientAccumulationScheduler, ModelSummary, Timer
from fulmen.train.callbacks._model_checkpoint import ModelCheckpoint
from fulmen.train.callbacks._progress import ProgressBar, TQDMProgressBar


def default_callbacks(
    callbacks: Any,
    max_time: Any,
    accumulate_grad_batches: int,
    checkpointing: bool,
    progress_bar: bool,
    model_summary: bool,
) -> list[Callback]:
    """``Trainer(callbacks=...)`` plus the defaults that were not given (Lightning's rules)."""
    given = list(callbacks) if isinstance(callbacks, list | tuple) else []
    if isinstance(callbacks, Callback):
        given = [callbacks]
    for cb in given:
        if not isinstance(cb, Callback):
            raise TypeError(f"Trainer(callbacks=...): {type(cb).__name__} is not a fulmen Callback")
    kinds = tuple(type(cb) for cb in given)
    if checkpointing and not any(issubclass(k, ModelCheckpoint) for k in kinds):
        given.append(ModelCheckpoint())
    if progress_bar and not any(issubclass(k, ProgressBar) for k in kinds):
        given.append(TQDMProgressBar())
    if model_summary and not any(issubclass(k, ModelSummary) for k in kinds):
        given.append(ModelSummary())
    if max_time is not None and not any(issubclass(k, Timer) for k in kinds):
        given.append(Timer(duration=max_time))
    if accumulate_grad_batches != 1 and any(
        issubclass(k, GradientAccumulationScheduler) for k in kinds
    ):
        raise ValueError(
            "Trainer(accumulate_grad_batches=...) and a GradientAccumulationScheduler "
            "callback cannot be used together"
        )
    return checkpoints_last(given)


def checkpoints_last(callbacks: list[Callback]) -> list[Callback]:
    """ModelCheckpoint callbacks go last, so they see what other callbacks logged (Lightning)."""
    return [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)] + [
        cb for cb in callbacks if isinstance(cb, ModelCheckpoint)
    ]
