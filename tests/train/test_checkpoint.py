"""Checkpoint contents, atomic writes, ModelCheckpoint's names and policies, ckpt_path."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

import fulmen as pl
from fulmen.train import _checkpoint
from tests.train.helpers import Regressor, loader, quiet_trainer


class Stateful:
    """A logger with checkpoint state (as WandbLogger keeps its run id)."""

    name = "stateful"
    version = "abc"
    save_dir = None
    root_dir = None
    log_dir = None
    experiment = None

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self.events: list[str] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.events.append("log_metrics")

    def log_hyperparams(self, params: Any) -> None:
        self.events.append("log_hyperparams")

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        pass

    def save(self) -> None:
        pass

    def finalize(self, status: str) -> None:
        pass

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.events.append("after_save_checkpoint")

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.events.append("load_state_dict")
        self.run_id = state["run_id"]


def test_checkpoint_holds_the_full_training_state(tmp_path: Path) -> None:
    early = pl.callbacks.EarlyStopping(monitor="val_loss", patience=5)
    best = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val_loss")
    logger = Stateful(run_id="run-1")
    trainer = quiet_trainer(
        max_epochs=2, callbacks=[early, best], enable_checkpointing=True, logger=logger
    )
    model = Regressor(scheduler=True)
    trainer.fit(model, loader(), loader(n=16))
    ckpt = torch.load(best.best_model_path, weights_only=False)
    assert {
        "epoch",
        "global_step",
        "pytorch-lightning_version",
        "state_dict",
        "loops",
        "callbacks",
        "optimizer_states",
        "lr_schedulers",
        "precision",
        "hparams_name",
        "hyper_parameters",
        "rng_states",
        "loggers",
    } <= set(ckpt)
    assert ckpt["loops"]["fit_loop"]["epoch_done"] is True
    assert ckpt["hyper_parameters"]["scheduler"] is True
    assert ckpt["loggers"] == {"Stateful": {"run_id": "run-1"}}
    assert ckpt["callbacks"][early.state_key]["patience"] == 5
    assert ckpt["callbacks"][best.state_key]["best_model_path"] == best.best_model_path
    assert set(ckpt["rng_states"]) >= {"python", "numpy", "torch"}
    assert "after_save_checkpoint" in logger.events


def test_loggers_get_their_state_before_anything_else_on_resume(tmp_path: Path) -> None:
    trainer = quiet_trainer(logger=Stateful(run_id="run-7"))
    trainer.fit(Regressor(), loader())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    fresh = Stateful()
    quiet_trainer(logger=fresh, max_epochs=2).fit(
        Regressor(), loader(), ckpt_path=tmp_path / "a.ckpt"
    )
    assert fresh.run_id == "run-7"
    assert fresh.events[:2] == ["load_state_dict", "log_hyperparams"]


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.ckpt"
    _checkpoint.save_atomically({"state_dict": {}, "v": 1}, target)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        _checkpoint.save_atomically({"state_dict": {}, "v": 2}, target)
    monkeypatch.undo()
    assert torch.load(target)["v"] == 1  # the old file is intact
    assert os.listdir(tmp_path) == ["x.ckpt"]  # and no temporary file is left


def test_filename_templates_top_k_and_last(tmp_path: Path) -> None:
    class Scored(Regressor):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("score", float(self.current_epoch % 3))  # 0, 1, 2, 0, 1

    cb = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path,
        filename="{epoch}-{score:.1f}",
        monitor="score",
        mode="max",
        save_top_k=2,
        save_last=True,
    )
    trainer = quiet_trainer(max_epochs=5, callbacks=[cb], enable_checkpointing=True)
    trainer.fit(Scored(), loader(n=16), loader(n=8))
    assert sorted(os.listdir(tmp_path)) == [
        "epoch=1-score=1.0.ckpt",  # epoch 4 ties it: not better, not kept
        "epoch=2-score=2.0.ckpt",
        "last.ckpt",
    ]
    assert cb.best_model_path == str(tmp_path / "epoch=2-score=2.0.ckpt")
    assert float(cb.best_model_score) == 2.0  # type: ignore[arg-type]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 4


def test_every_n_epochs_steps_time_and_weights_only(tmp_path: Path) -> None:
    every2 = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "e", every_n_epochs=2, save_top_k=-1)
    steps = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "s", every_n_train_steps=5, save_top_k=-1, save_weights_only=True
    )
    timed = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "t", train_time_interval=timedelta(seconds=0)
    )
    trainer = quiet_trainer(
        max_epochs=4, callbacks=[every2, steps, timed], enable_checkpointing=True
    )
    trainer.fit(Regressor(), loader(n=32))  # 4 batches an epoch, 16 steps
    assert sorted(os.listdir(tmp_path / "e")) == ["epoch=1-step=8.ckpt", "epoch=3-step=16.ckpt"]
    assert sorted(os.listdir(tmp_path / "s")) == [
        "epoch=1-step=5.ckpt",
        "epoch=2-step=10.ckpt",
        "epoch=3-step=15.ckpt",
    ]
    weights_only = torch.load(tmp_path / "s" / "epoch=1-step=5.ckpt", weights_only=False)
    assert "optimizer_states" not in weights_only
    assert os.listdir(tmp_path / "t") == ["epoch=3-step=16.ckpt"]  # top 1 without monitor: latest


def test_monitor_that_is_never_logged_is_a_clear_error(tmp_path: Path) -> None:
    cb = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val_acc")
    with pytest.raises(KeyError, match=r"monitor='val_acc'.*did you call self.log"):
        quiet_trainer(callbacks=[cb], enable_checkpointing=True).fit(Regressor(), loader())


def test_ckpt_path_last_and_best(tmp_path: Path) -> None:
    cb = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_last=True)
    trainer = quiet_trainer(max_epochs=2, callbacks=[cb], enable_checkpointing=True)
    trainer.fit(Regressor(), loader(), loader(n=16))
    assert trainer.global_step == 16
    again = quiet_trainer(
        max_epochs=3,
        enable_checkpointing=True,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)],
    )
    again.fit(Regressor(), loader(), loader(n=16), ckpt_path="last")
    assert again.global_step == 24
    results = trainer.validate(dataloaders=loader(n=16), ckpt_path="best", verbose=False)
    assert set(results[0]) == {"val_loss"}
    with pytest.warns(UserWarning, match="the best model of the previous fit is used"):
        again_results = trainer.validate(dataloaders=loader(n=16), verbose=False)
    assert again_results == results


def test_default_checkpoint_path_is_under_the_log_dir(tmp_path: Path) -> None:
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regressor(), loader())
    expected = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "epoch=0-step=8.ckpt"
    assert trainer.checkpoint_callback.best_model_path == str(expected)
    assert expected.is_file()
    no_logger = quiet_trainer(default_root_dir=tmp_path, enable_checkpointing=True)
    no_logger.fit(Regressor(), loader())
    assert (tmp_path / "checkpoints" / "epoch=0-step=8.ckpt").is_file()
