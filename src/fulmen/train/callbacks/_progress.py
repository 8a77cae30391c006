"""Progress bars: TQDMProgressBar (the default) and RichProgressBar (needs the optional rich).

Both are ordinary callbacks. The per-batch cost is kept small: the bar advances every
``refresh_rate`` batches, and the metrics shown beside it (which convert tensors to floats) are
refreshed at most ten times a second.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

from fulmen.train.callback import Callback

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer

_METRICS_EVERY_S = 0.1


class ProgressBar(Callback):
    """Base of the progress bars (the Trainer adds a TQDMProgressBar unless one is given)."""

    def __init__(self) -> None:
        self._enabled = True

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """What is shown beside the bar: ``v_num`` and the metrics logged with prog_bar=True."""
        metrics: dict[str, Any] = {}
        if trainer.loggers:
            version = trainer.loggers[0].version
            if version is not None:
                metrics["v_num"] = version[-4:] if isinstance(version, str) else version
        for key, value in trainer.progress_bar_metrics.items():
            metrics[key] = f"{value:.3g}" if isinstance(value, float) else value
        return metrics


def _total(n: float) -> int | None:
    return None if math.isinf(n) else int(n)


class TQDMProgressBar(ProgressBar):
    """A tqdm bar per stage: training (with the epoch), validation, test, predict."""

    def __init__(
        self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False
    ) -> None:
        super().__init__()
        self.refresh_rate = refresh_rate
        self.process_position = process_position
        self.leave = leave
        self.train_progress_bar: Any = None
        self.val_progress_bar: Any = None
        self._eval_bar: Any = None
        self._last_metrics = 0.0

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.refresh_rate > 0

    def _new(self, desc: str, total: float, position: int, leave: bool) -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            desc=desc,
            total=_total(total),
            position=self.process_position + position,
            leave=leave,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            disable=not self.is_enabled,
        )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            self.disable()

    # training
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_progress_bar = self._new("Training", trainer.num_training_batches, 0, True)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self.train_progress_bar
        if bar is not None:
            bar.reset(total=_total(trainer.num_training_batches))
            bar.initial = 0
            bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        if bar is None or (batch_idx + 1) % self.refresh_rate:
            return
        bar.update(self.refresh_rate)
        now = time.monotonic()
        if now - self._last_metrics >= _METRICS_EVERY_S:
            self._last_metrics = now
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        bar = self.train_progress_bar
        if bar is not None:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.train_progress_bar is not None:
            self.train_progress_bar.close()
            self.train_progress_bar = None

    # evaluation
    def _eval_start(self, desc: str, totals: list[float]) -> None:
        nested = self.train_progress_bar is not None
        self._eval_bar = self._new(desc, sum(totals), 1 if nested else 0, not nested and self.leave)

    def _eval_advance(self, batch_idx: int) -> None:
        if self._eval_bar is not None and (batch_idx + 1) % self.refresh_rate == 0:
            self._eval_bar.update(self.refresh_rate)

    def _eval_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._eval_bar is not None:
            self._eval_bar.close()
            self._eval_bar = None
        if self.train_progress_bar is not None:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        counts = (
            trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        )
        self._eval_start("Sanity Checking" if trainer.sanity_checking else "Validation", counts)
        self.val_progress_bar = self._eval_bar

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_advance(batch_idx)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_end(trainer, pl_module)
        self.val_progress_bar = None

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start("Testing", trainer.num_test_batches)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_advance(batch_idx)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_end(trainer, pl_module)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start("Predicting", trainer.num_predict_batches)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_advance(batch_idx)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_end(trainer, pl_module)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        for bar in (self.train_progress_bar, self._eval_bar):
            if bar is not None:
                bar.close()
        self.train_progress_bar = self._eval_bar = None


class RichProgressBar(ProgressBar):
    """A progress bar drawn with ``rich`` (an optional dependency: ``pip install rich``)."""

    def __init__(self, refresh_rate: int = 1, leave: bool = False) -> None:
        super().__init__()
        try:
            import rich.progress
        except ImportError as exc:
            raise ModuleNotFoundError(
                "RichProgressBar needs the optional 'rich' package: pip install rich "
                "(or use the default TQDMProgressBar)"
            ) from exc
        self._rich = rich.progress
        self.refresh_rate = refresh_rate
        self.leave = leave
        self._progress: Any = None
        self._task: Any = None
        self._last_metrics = 0.0

    def _start(self, desc: str, total: float) -> None:
        if not self.is_enabled:
            return
        if self._progress is None:
            self._progress = self._rich.Progress(
                self._rich.TextColumn("[progress.description]{task.description}"),
                self._rich.BarColumn(),
                self._rich.MofNCompleteColumn(),
                self._rich.TimeElapsedColumn(),
                self._rich.TextColumn("{task.fields[metrics]}"),
                transient=not self.leave,
            )
            self._progress.start()
        self._task = self._progress.add_task(desc, total=_total(total), metrics="")

    def _advance(self, trainer: Trainer, pl_module: LightningModule, batch_idx: int) -> None:
        if self._progress is None or (batch_idx + 1) % self.refresh_rate:
            return
        now = time.monotonic()
        fields: dict[str, Any] = {}
        if now - self._last_metrics >= _METRICS_EVERY_S:
            self._last_metrics = now
            metrics = self.get_metrics(trainer, pl_module)
            fields["metrics"] = " ".join(f"{k}: {v}" for k, v in metrics.items())
        self._progress.update(self._task, advance=self.refresh_rate, **fields)

    def _finish(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            self.disable()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(f"Epoch {trainer.current_epoch}", trainer.num_training_batches)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._advance(trainer, pl_module, batch_idx)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        counts = (
            trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        )
        self._val_task_outer = self._task
        self._start("Validation", sum(counts))

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._advance(trainer, pl_module, batch_idx)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish()
        self._task = getattr(self, "_val_task_outer", None)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start("Testing", sum(trainer.num_test_batches))

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._advance(trainer, pl_module, batch_idx)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        self.teardown(trainer, pl_module, "")
