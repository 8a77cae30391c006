"""The built-in callbacks: EarlyStopping, LearningRateMonitor, GradientAccumulationScheduler,
Timer, ModelSummary, the progress bars."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

import fulmen as pl
from tests.train.helpers import Regressor, loader, quiet_trainer
from tests.train.test_logging import Recorder


class Plateau(Regressor):
    """val_loss goes 1, 0.5, 0.6, 0.7, 0.8, ..."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        e = self.current_epoch
        self.log("val_loss", 1.0 if e == 0 else 0.5 + 0.1 * (e - 1))


def test_early_stopping_waits_patience_checks_then_stops() -> None:
    early = pl.callbacks.EarlyStopping(monitor="val_loss", patience=2)
    trainer = quiet_trainer(max_epochs=20, callbacks=[early], limit_train_batches=1)
    trainer.fit(Plateau(), loader(), loader(n=8))
    assert trainer.current_epoch == 4  # best at epoch 1; epochs 2 and 3 do not improve
    assert early.stopped_epoch == 3
    assert float(early.best_score) == 0.5
    assert trainer.should_stop


def test_early_stopping_respects_min_epochs_and_thresholds() -> None:
    early = pl.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    trainer = quiet_trainer(max_epochs=20, min_epochs=6, callbacks=[early], limit_train_batches=1)
    trainer.fit(Plateau(), loader(), loader(n=8))
    assert trainer.current_epoch == 6
    threshold = pl.callbacks.EarlyStopping(monitor="val_loss", stopping_threshold=0.6)
    trainer = quiet_trainer(max_epochs=20, callbacks=[threshold], limit_train_batches=1)
    trainer.fit(Plateau(), loader(), loader(n=8))
    assert trainer.current_epoch == 2


def test_early_stopping_on_a_missing_metric_lists_what_exists() -> None:
    early = pl.callbacks.EarlyStopping(monitor="val_acc")
    with pytest.raises(RuntimeError, match=r"`val_acc` which is not available.*`val_loss`"):
        quiet_trainer(callbacks=[early], limit_train_batches=1).fit(
            Regressor(), loader(), loader(n=8)
        )


def test_learning_rate_monitor_logs_each_step_and_epoch() -> None:
    recorder = Recorder()
    monitor = pl.callbacks.LearningRateMonitor(logging_interval="step")
    trainer = quiet_trainer(
        max_epochs=2,
        callbacks=[monitor],
        logger=recorder,
        log_every_n_steps=1,
        limit_train_batches=2,
    )
    trainer.fit(Regressor(scheduler=True), loader())
    assert monitor.lrs == {"lr-SGD": pytest.approx([0.1, 0.1, 0.07, 0.07])}
    lr_rows = [(step, row) for step, row in recorder.rows if "lr-SGD" in row]
    assert [step for step, _ in lr_rows] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no logger"):
        quiet_trainer(callbacks=[pl.callbacks.LearningRateMonitor()]).fit(Regressor(), loader())


def test_gradient_accumulation_scheduler_changes_the_factor_by_epoch() -> None:
    schedule = pl.callbacks.GradientAccumulationScheduler({1: 2, 2: 4})
    trainer = quiet_trainer(max_epochs=3, callbacks=[schedule])
    trainer.fit(Regressor(), loader())  # 8 batches: 8 + 4 + 2 steps
    assert trainer.global_step == 14
    with pytest.raises(ValueError, match="cannot be used together"):
        quiet_trainer(accumulate_grad_batches=2, callbacks=[schedule])


def test_max_time_stops_training_and_timer_reports() -> None:
    trainer = quiet_trainer(max_epochs=1000, max_time={"seconds": 0})
    trainer.fit(Regressor(), loader())
    assert trainer.global_step == 1
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, pl.callbacks.Timer))
    assert timer.time_elapsed("train") > 0
    assert timer.state_dict()["time_elapsed"]["train"] > 0
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        pl.callbacks.Timer(duration="5 minutes")


def test_model_summary_prints_layers_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = quiet_trainer(enable_model_summary=True, limit_train_batches=1)
    trainer.fit(Regressor(), loader())
    out = capsys.readouterr().out
    assert "net  | Sequential | 161" in out
    assert "Trainable params" in out


def test_tqdm_progress_bar_is_the_default_and_shows_prog_bar_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Shown(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.log("shown", 1.25, prog_bar=True)
            return loss

    trainer = quiet_trainer(enable_progress_bar=True, max_epochs=2)
    assert isinstance(trainer.progress_bar_callback, pl.callbacks.TQDMProgressBar)
    trainer.fit(Shown(), loader(), loader(n=8))
    out = capsys.readouterr().out
    assert "Epoch 1" in out
    assert "shown=1.25" in out


@pytest.mark.skipif(importlib.util.find_spec("rich") is not None, reason="rich is installed")
def test_rich_progress_bar_without_rich_says_how_to_get_it() -> None:
    with pytest.raises(ModuleNotFoundError, match="pip install rich"):
        pl.callbacks.RichProgressBar()


def test_configure_callbacks_replaces_callbacks_of_the_same_type() -> None:
    mine = pl.callbacks.EarlyStopping(monitor="val_loss", patience=9)

    class WithCallbacks(Regressor):
        def configure_callbacks(self) -> Any:
            return [mine]

    trainer = quiet_trainer(
        callbacks=[pl.callbacks.EarlyStopping(monitor="val_loss")], limit_train_batches=1
    )
    trainer.fit(WithCallbacks(), loader(), loader(n=8))
    assert trainer.early_stopping_callbacks == [mine]
