"""``self.log``: Lightning's per-hook defaults, forking, weighted epoch means, emission steps."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from tests.train.helpers import Regressor, loader, quiet_trainer


class Recorder:
    """A Logger that keeps every call (the protocol is structural: no base class needed)."""

    name = "recorder"
    version = 0
    save_dir = None
    root_dir = None
    log_dir = None
    experiment = None

    def __init__(self) -> None:
        self.rows: list[tuple[int | None, dict[str, float]]] = []
        self.hparams: list[Any] = []
        self.finalized: list[str] = []
        self.saved = 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any) -> None:
        self.hparams.append(params)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        pass

    def save(self) -> None:
        self.saved += 1

    def finalize(self, status: str) -> None:
        self.finalized.append(status)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        pass


class Logs(Regressor):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.log("both", float(batch_idx), on_step=True, on_epoch=True)
        self.log("summed", 1.0, on_step=False, on_epoch=True, reduce_fx="sum")
        self.log("peak", float(batch_idx), on_step=False, on_epoch=True, reduce_fx="max")
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("epoch_metric", 5.0)


def test_training_step_defaults_to_on_step_and_fork_names_step_and_epoch() -> None:
    recorder = Recorder()
    trainer = quiet_trainer(logger=recorder, log_every_n_steps=2, max_epochs=1)
    trainer.fit(Logs(), loader(n=32))
    step_rows = [row for _, row in recorder.rows if "train_loss" in row]
    # 4 batches, logged every 2 optimizer steps, at steps 1 and 3 (Lightning's "step" is 0-based)
    assert [s for s, row in recorder.rows if "train_loss" in row] == [1, 3]
    assert set(step_rows[0]) == {"train_loss", "both_step", "epoch"}
    epoch_row = recorder.rows[-1][1]
    assert epoch_row == {
        "both_epoch": pytest.approx(1.5),
        "summed": 4.0,
        "peak": 3.0,
        "epoch_metric": 5.0,
        "epoch": 0,
    }
    assert recorder.rows[-1][0] == 4
    metrics = trainer.callback_metrics
    assert float(metrics["both"]) == pytest.approx(1.5)  # after the epoch: the epoch value
    assert float(metrics["both_step"]) == 3.0
    assert float(metrics["both_epoch"]) == pytest.approx(1.5)
    assert "train_loss" in trainer.logged_metrics
    assert recorder.finalized == ["success"]


def test_validation_defaults_to_on_epoch_with_means_weighted_by_batch_size() -> None:
    class Val(Regressor):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_value", float(batch_idx))  # batch sizes 3 and 1: mean (0*3 + 1*1) / 4

    recorder = Recorder()
    trainer = quiet_trainer(logger=recorder)
    results = trainer.validate(Val(), DataLoader(TensorDataset(torch.zeros(4, 8)), batch_size=3))
    assert results == [{"val_value": pytest.approx(0.25)}]
    assert recorder.rows == [(0, {"val_value": pytest.approx(0.25), "epoch": 0})]


def test_explicit_batch_size_and_prog_bar_and_logger_false() -> None:
    class Val(Regressor):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("weighted", float(batch_idx), batch_size=batch_idx + 1, prog_bar=True)
            self.log("hidden", 1.0, logger=False)

    recorder = Recorder()
    trainer = quiet_trainer(logger=recorder)
    trainer.validate(Val(), loader(n=16), verbose=False)  # 2 batches: (0*1 + 1*2) / 3
    assert recorder.rows[0][1] == {"weighted": pytest.approx(2 / 3), "epoch": 0}
    assert trainer.progress_bar_metrics == {"weighted": pytest.approx(2 / 3)}
    assert float(trainer.callback_metrics["hidden"]) == 1.0


def test_logging_where_lightning_forbids_it_names_the_hook() -> None:
    class Bad(Regressor):
        def on_fit_start(self) -> None:
            self.log("x", 1.0)

    with pytest.raises(ValueError, match=r"You can't `self.log\('x', ...\)` in `on_fit_start`"):
        quiet_trainer().fit(Bad(), loader())


def test_on_step_in_an_epoch_hook_and_bad_values_are_errors() -> None:
    class StepInEpochEnd(Regressor):
        def on_train_epoch_end(self) -> None:
            self.log("x", 1.0, on_step=True)

    with pytest.raises(ValueError, match=r"on_step=True.*on_train_epoch_end"):
        quiet_trainer().fit(StepInEpochEnd(), loader())

    class NotScalar(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.log("vec", torch.ones(3))
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match=r"must be a scalar, got a tensor of shape \(3,\)"):
        quiet_trainer().fit(NotScalar(), loader())

    class BadReduce(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.log("x", 1.0, reduce_fx="median")
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match="Found: median"):
        quiet_trainer().fit(BadReduce(), loader())


def test_log_dict_and_multiple_dataloaders_get_the_suffix() -> None:
    class Multi(Regressor):
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log_dict({"a": float(dataloader_idx), "b": 1.0})
            self.log("shared", 2.0, add_dataloader_idx=False)

    trainer = quiet_trainer()
    results = trainer.validate(Multi(), [loader(n=8), loader(n=8)], verbose=False)
    assert results == [
        {"a/dataloader_idx_0": 0.0, "b/dataloader_idx_0": 1.0, "shared": 2.0},
        {"a/dataloader_idx_1": 1.0, "b/dataloader_idx_1": 1.0, "shared": 2.0},
    ]


def test_default_logger_writes_metrics_csv_under_default_root_dir(tmp_path: Path) -> None:
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regressor(lr=0.05), loader(n=16), loader(n=8))
    folder = tmp_path / "lightning_logs" / "version_0"
    assert trainer.log_dir == str(folder)
    with open(folder / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["train_loss", "epoch", "step", "val_loss"]
    assert [r["step"] for r in rows if r["train_loss"]] == ["0", "1", "2", "3"]
    assert [r["step"] for r in rows if r["val_loss"]] == ["2", "4"]
    assert (folder / "hparams.yaml").read_text().splitlines()[0] == "lr: 0.05"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch=1-step=4.ckpt"]


class MeanMetric:
    """A torchmetrics-style metric (update/compute/reset, forward caches the batch value)."""

    def __init__(self) -> None:
        self.reset()

    def __call__(self, value: float) -> float:
        self.update(value)
        self._forward_cache = value
        return value

    def update(self, value: float) -> None:
        self.total += value
        self.n += 1

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.total / max(self.n, 1))

    def reset(self) -> None:
        self.total, self.n = 0.0, 0


def test_metric_objects_are_computed_at_epoch_end_and_reset() -> None:
    class WithMetric(Regressor):
        def __init__(self) -> None:
            super().__init__()
            self.metric = MeanMetric()

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.metric(float(batch_idx))
            self.log("val_mean", self.metric)

    model = WithMetric()
    trainer = quiet_trainer()
    assert trainer.validate(model, loader(n=32), verbose=False) == [{"val_mean": 1.5}]
    assert float(trainer.callback_metrics["val_mean"]) == 1.5
    assert model.metric.n == 0  # reset after the epoch


def test_a_logged_step_sets_the_x_axis_and_a_logged_epoch_is_kept() -> None:
    class Axis(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.log("step", float(100 + batch_idx))
            self.log("epoch", 7.0)
            return loss

    recorder = Recorder()
    quiet_trainer(logger=recorder, log_every_n_steps=1, limit_train_batches=3).fit(Axis(), loader())
    step_rows = [(step, row) for step, row in recorder.rows if "train_loss" in row]
    assert [step for step, _ in step_rows] == [100, 101, 102]
    assert all("step" not in row and row["epoch"] == 7.0 for _, row in step_rows)


def test_tensor_and_python_values_reach_the_logger_as_floats() -> None:
    class Mixed(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.log("count", batch_idx)
            return loss

    recorder = Recorder()
    quiet_trainer(logger=recorder, log_every_n_steps=1, limit_train_batches=2).fit(
        Mixed(), loader()
    )
    (step0, first), (step1, second) = recorder.rows[:2]
    assert (step0, step1) == (0, 1)
    assert type(first["train_loss"]) is float
    assert (first["count"], second["count"]) == (0.0, 1.0)
    assert first["epoch"] == 0


def test_a_logged_loss_reaches_loggers_and_callbacks_detached() -> None:
    seen: list[float] = []

    class Losses(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)  # logs train_loss, attached
            seen.append(loss.item())
            return loss

    recorder = Recorder()
    trainer = quiet_trainer(logger=recorder, log_every_n_steps=1, limit_train_batches=3)
    trainer.fit(Losses(), loader())
    assert [row["train_loss"] for _, row in recorder.rows if "train_loss" in row] == seen
    metric = trainer.callback_metrics["train_loss"]
    assert not metric.requires_grad
    assert metric.item() == pytest.approx(seen[-1])


@pytest.mark.parametrize("options", [{}, {"on_epoch": True}, {"prog_bar": True, "logger": False}])
def test_the_stored_value_never_holds_the_graph_first_call_or_later(
    options: dict[str, Any],
) -> None:
    stored: list[tuple[bool, bool]] = []  # (value, running total) attached to a graph?

    class Keeps(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("attached", loss, **options)  # the loss itself: it requires grad
            metric = self.trainer._train_results.metrics["attached"]
            total = metric.total
            stored.append(
                (
                    isinstance(metric.value, torch.Tensor) and metric.value.requires_grad,
                    isinstance(total, torch.Tensor) and total.requires_grad,
                )
            )
            return loss

    quiet_trainer(log_every_n_steps=1, limit_train_batches=4).fit(Keeps(), loader())
    assert len(stored) == 4  # the first call (which makes the metric) and three later ones
    assert stored == [(False, False)] * 4
