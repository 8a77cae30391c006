"""Lightning's public corners: BasePredictionWriter, OnExceptionCheckpoint,
ModelCheckpoint(save_on_exception), LearningRateMonitor's prefix/momentum/weight decay,
Trainer.ckpt_path, LightningDataModule.__str__, freeze/unfreeze, Ctrl-C, to_torchscript."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.callbacks import (
    BasePredictionWriter,
    LearningRateMonitor,
    ModelCheckpoint,
    OnExceptionCheckpoint,
)
from tests.train.helpers import Regressor, loader, quiet_trainer, regression_data


class Recorder(BasePredictionWriter):
    def __init__(self, write_interval: str = "batch") -> None:
        super().__init__(write_interval)
        self.batches: list[tuple[list[int] | None, int, int]] = []
        self.epoch: tuple[Any, Any] | None = None

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        assert prediction.shape == (len(batch[0]), 1)
        self.batches.append((batch_indices, batch_idx, dataloader_idx))

    def write_on_epoch_end(
        self, trainer: Any, pl_module: Any, predictions: Any, batch_indices: Any
    ) -> None:
        self.epoch = (predictions, batch_indices)


def test_prediction_writer_writes_each_batch_with_its_dataset_indices() -> None:
    writer = Recorder("batch")
    data = loader(20, batch_size=8)
    trainer = quiet_trainer(callbacks=[writer])
    trainer.predict(Regressor(), data)
    assert writer.batches == [
        (list(range(8)), 0, 0),
        (list(range(8, 16)), 1, 0),
        (list(range(16, 20)), 2, 0),
    ]
    assert writer.epoch is None
    assert not hasattr(data.batch_sampler, "seen")  # the loader is left as it was


def test_prediction_writer_indices_follow_a_shuffled_sampler() -> None:
    writer = Recorder("batch")
    torch.manual_seed(0)
    data = DataLoader(regression_data(16), batch_size=4, shuffle=True)
    quiet_trainer(callbacks=[writer]).predict(Regressor(), data)
    seen = [i for indices, _, _ in writer.batches for i in indices or []]
    assert sorted(seen) == list(range(16))
    assert seen != list(range(16))


def test_prediction_writer_on_epoch_gets_every_prediction_even_without_returning_them() -> None:
    writer = Recorder("batch_and_epoch")
    out = quiet_trainer(callbacks=[writer]).predict(
        Regressor(), loader(12, batch_size=5), return_predictions=False
    )
    assert out is None
    assert writer.epoch is not None
    predictions, indices = writer.epoch
    assert [len(p) for p in predictions] == [5, 5, 2]
    assert indices == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert len(writer.batches) == 3
    with pytest.raises(ValueError, match="`write_interval` should be one of"):
        Recorder("step")


class Boom(Regressor):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.global_step == 3:
            raise RuntimeError("boom at step 3")
        return super().training_step(batch, batch_idx)


def test_on_exception_checkpoint_saves_the_state_the_error_left(tmp_path: Path) -> None:
    cb = OnExceptionCheckpoint(tmp_path, filename="crash")
    trainer = quiet_trainer(callbacks=[cb])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Boom(), loader())
    assert cb.ckpt_path == str(tmp_path / "crash.ckpt")
    saved = torch.load(cb.ckpt_path, weights_only=False)
    assert saved["global_step"] == 3
    with pytest.raises(ValueError, match="filename cannot be empty"):
        OnExceptionCheckpoint(tmp_path, filename="")


def test_model_checkpoint_save_on_exception(tmp_path: Path) -> None:
    cb = ModelCheckpoint(dirpath=tmp_path, filename="m-{step}", save_on_exception=True)
    trainer = quiet_trainer(callbacks=[cb], enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Boom(), loader())
    assert os.listdir(tmp_path) == ["m-step=3-exception.ckpt"]
    quiet = ModelCheckpoint(dirpath=tmp_path / "off")
    with pytest.raises(RuntimeError, match="boom"):
        quiet_trainer(callbacks=[quiet], enable_checkpointing=True).fit(Boom(), loader())
    assert not (tmp_path / "off").exists()


class MemoryLogger(pl.loggers.CSVLogger):
    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self.rows: list[dict[str, float]] = []

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        self.rows.append(dict(metrics))


def test_learning_rate_monitor_prefix_momentum_and_weight_decay(tmp_path: Path) -> None:
    monitor = LearningRateMonitor(
        logging_interval="step", log_momentum=True, log_weight_decay=True, log_key_prefix="opt/"
    )
    logger = MemoryLogger(str(tmp_path))
    trainer = quiet_trainer(callbacks=[monitor], logger=logger, log_every_n_steps=1)
    trainer.fit(Regressor(lr=0.1), loader(16))
    assert monitor.lrs == {"opt/lr-SGD": [0.1, 0.1]}
    assert monitor.last_momentum_values == {"opt/lr-SGD-momentum": 0.9}
    keys = set().union(*logger.rows)
    assert {"opt/lr-SGD", "opt/lr-SGD-momentum", "opt/lr-SGD-weight_decay"} <= keys
    adam = LearningRateMonitor(logging_interval="step", log_momentum=True)
    quiet_trainer(callbacks=[adam], logger=MemoryLogger(str(tmp_path)), log_every_n_steps=1).fit(
        Regressor(optimizer="adam"), loader(16)
    )
    assert adam.last_momentum_values == {"lr-Adam-momentum": 0.9}  # betas[0]
    with pytest.raises(TypeError, match="log_key_prefix"):
        LearningRateMonitor(log_key_prefix=3)  # type: ignore[arg-type]


def test_trainer_ckpt_path_is_the_checkpoint_the_run_loaded(tmp_path: Path) -> None:
    model = Regressor()
    trainer = quiet_trainer()
    assert trainer.ckpt_path is None
    trainer.fit(model, loader())
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)
    trainer.validate(model, loader(), ckpt_path=path, verbose=False)
    assert trainer.ckpt_path == str(path)
    trainer.validate(model, loader(), verbose=False)
    assert trainer.ckpt_path is None


def test_datamodule_str_lists_each_dataloader_and_its_size() -> None:
    class Data(pl.LightningDataModule):
        def train_dataloader(self) -> Any:
            return loader(64)

        def test_dataloader(self) -> Any:
            return [loader(10), loader(20)]

    assert str(Data()).split(os.linesep) == [
        "{Train dataloader: size=64}",
        "{Validation dataloader: None}",
        "{Test dataloader: 1. size=10 ; 2. size=20}",
        "{Predict dataloader: None}",
    ]


def test_freeze_and_unfreeze_as_lightning() -> None:
    model = Regressor(dropout=0.5)
    model.freeze()
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    model.unfreeze()
    assert model.training
    assert all(p.requires_grad for p in model.parameters())


class CtrlC(Regressor):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.global_step == 2:
            raise KeyboardInterrupt
        return super().training_step(batch, batch_idx)


class Watcher(pl.Callback):
    def __init__(self) -> None:
        self.exceptions: list[BaseException] = []

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.exceptions.append(exception)


def test_ctrl_c_runs_on_exception_and_marks_the_trainer_interrupted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    watcher = Watcher()
    trainer = quiet_trainer(callbacks=[watcher])
    # Lightning 2.x: graceful shutdown, then exit status 1 (its _call_and_handle_interrupt)
    with pytest.raises(SystemExit) as info:
        trainer.fit(CtrlC(), loader())
    assert info.value.code == 1
    assert trainer.interrupted is True
    assert trainer.state.status == "interrupted"
    assert [type(e) for e in watcher.exceptions] == [KeyboardInterrupt]
    assert "Detected KeyboardInterrupt, attempting graceful shutdown" in capsys.readouterr().out


class Scriptable(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.example_input_array = torch.zeros(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.layer(x))


# torch >= 2.9 deprecates TorchScript itself (it still works), and says so on each call
@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
def test_to_torchscript_scripts_and_traces_and_saves(tmp_path: Path) -> None:
    model = Scriptable()
    x = torch.randn(5, 4)
    scripted = model.to_torchscript()
    assert model.training  # the mode is put back
    torch.testing.assert_close(scripted(x), model(x))
    traced = model.to_torchscript(tmp_path / "traced.pt", method="trace")
    torch.testing.assert_close(traced(x), model(x))
    loaded = torch.jit.load(str(tmp_path / "traced.pt"))
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="only supports 'script' or 'trace'"):
        model.to_torchscript(method="onnx")
    trained = Regressor()
    quiet_trainer().fit(trained, loader(16))  # attached to a Trainer: still scriptable
    torch.testing.assert_close(trained.to_torchscript()(x.repeat(1, 2)), trained(x.repeat(1, 2)))
