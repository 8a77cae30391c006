"""EarlyStopping: stop when a monitored metric stops improving."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from fulmen.train.callback import Callback

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer


class EarlyStopping(Callback):
    """Set ``trainer.should_stop`` after ``patience`` checks without improvement of ``monitor``.

    Checked after each validation run (or at each training epoch end when validation runs once per
    epoch, as in Lightning). Also stops on a non-finite value (``check_finite``), when
    ``stopping_threshold`` is reached, or past ``divergence_threshold``.
    """

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping(mode={mode!r}) must be 'min' or 'max'")
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = torch.tensor(math.inf if mode == "min" else -math.inf)
        self.stopping_reason_message: str | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            self._check_on_train_epoch_end = (
                trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1
            )

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._check_on_train_epoch_end and not trainer.sanity_checking:
            self._check(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._check_on_train_epoch_end or trainer.sanity_checking or trainer._entry != "fit":
            return
        self._check(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": self.best_score,
            "patience": self.patience,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]

    def _check(self, trainer: Trainer) -> None:
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            if self.strict:
                raise RuntimeError(
                    f"Early stopping conditioned on metric `{self.monitor}` which is not "
                    "available. Pass in or modify your `EarlyStopping` callback to use any of "
                    f"the following: `{'`, `'.join(sorted(metrics))}`"
                )
            return
        current = metrics[self.monitor].squeeze()
        should_stop, reason = self._evaluate(current)
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
        if reason and self.verbose:
            trainer.print(reason)

    def _better(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(torch.lt(a, b) if self.mode == "min" else torch.gt(a, b))

    def _evaluate(self, current: torch.Tensor) -> tuple[bool, str | None]:
        if self.check_finite and not torch.isfinite(current):
            return True, (
                f"Monitored metric {self.monitor} = {float(current)} is not finite. Previous best "
                f"value was {float(self.best_score):.3f}. Signaling Trainer to stop."
            )
        if self.stopping_threshold is not None and self._better(
            current, torch.tensor(self.stopping_threshold)
        ):
            return True, (
                f"Stopping threshold reached: {self.monitor} = {float(current)} reached "
                f"{self.stopping_threshold}. Signaling Trainer to stop."
            )
        if self.divergence_threshold is not None and self._better(
            -current, -torch.tensor(self.divergence_threshold)
        ):
            return True, (
                f"Divergence threshold reached: {self.monitor} = {float(current)} is worse than "
                f"{self.divergence_threshold}. Signaling Trainer to stop."
            )
        delta = -self.min_delta if self.mode == "min" else self.min_delta
        if self._better(current - delta, self.best_score.to(current.device)):
            improved = bool(torch.isfinite(self.best_score))
            message = (
                f"Metric {self.monitor} improved"
                + (f" by {abs(float(self.best_score) - float(current)):.3f}" if improved else "")
                + f". New best score: {float(current):.3f}"
            )
            self.best_score, self.wait_count = current, 0
            return False, message
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return True, (
                f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} "
                f"records. Best score: {float(self.best_score):.3f}. Signaling Trainer to stop."
            )
        return False, None
