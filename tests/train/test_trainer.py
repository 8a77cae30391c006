"""Trainer arguments with Lightning's meanings, and the return values of its entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import fulmen as pl
from tests.train.helpers import Regressor, loader, quiet_trainer


class CountVal(Regressor):
    def __init__(self) -> None:
        super().__init__()
        self.val_runs: list[tuple[int, int]] = []

    def on_validation_start(self) -> None:
        if not self.trainer.sanity_checking:
            self.val_runs.append((self.current_epoch, self.global_step))


def test_val_check_interval_and_check_val_every_n_epoch() -> None:
    model = CountVal()
    quiet_trainer(max_epochs=2, val_check_interval=0.5).fit(model, loader(), loader(n=8))
    assert model.val_runs == [(0, 4), (0, 8), (1, 12), (1, 16)]
    model = CountVal()
    quiet_trainer(max_epochs=4, check_val_every_n_epoch=2).fit(model, loader(), loader(n=8))
    assert model.val_runs == [(1, 16), (3, 32)]
    model = CountVal()
    quiet_trainer(max_epochs=1, val_check_interval=3).fit(model, loader(), loader(n=8))
    assert model.val_runs == [(0, 3), (0, 6)]


def test_limits_max_steps_and_estimated_stepping_batches() -> None:
    trainer = quiet_trainer(max_epochs=3, limit_train_batches=0.5, accumulate_grad_batches=3)
    trainer.fit(Regressor(), loader())
    assert trainer.num_training_batches == 4
    assert trainer.global_step == 6
    assert trainer.estimated_stepping_batches == 6
    trainer = quiet_trainer(max_epochs=10, max_steps=5)
    trainer.fit(Regressor(), loader())
    assert trainer.global_step == 5  # mid-epoch: the epoch's end events still ran


def test_fast_dev_run_barebones_and_overfit_batches(tmp_path: Path) -> None:
    trainer = pl.Trainer(fast_dev_run=2, default_root_dir=tmp_path, enable_progress_bar=False)
    model = CountVal()
    trainer.fit(model, loader(), loader(n=32))
    assert trainer.global_step == 2
    assert trainer.loggers == []
    assert list(tmp_path.iterdir()) == []  # no logs, no checkpoints
    bare = pl.Trainer(barebones=True, max_epochs=1)
    assert bare.loggers == []
    assert bare.callbacks == []
    with pytest.raises(ValueError, match=r"barebones=True.*enable_checkpointing=True"):
        pl.Trainer(barebones=True, enable_checkpointing=True)
    over = quiet_trainer(overfit_batches=2, max_epochs=2)
    over.fit(Regressor(), loader())
    assert over.global_step == 4
    assert over.num_val_batches == [2]


def test_min_epochs_defaults_and_max_epochs_warning() -> None:
    trainer = pl.Trainer(logger=False)  # no warning here: fit() warns (test_lightning_behaviour)
    assert trainer.max_epochs == 1000
    assert pl.Trainer(logger=False, max_steps=10).max_epochs == -1


def test_predict_validate_test_return_values() -> None:
    trainer = quiet_trainer()
    model = Regressor()
    predictions = trainer.predict(model, loader(n=20, batch_size=8))
    assert [p.shape for p in predictions] == [(8, 1), (8, 1), (4, 1)]
    two = trainer.predict(model, [loader(n=8), loader(n=8)])
    assert [len(p) for p in two] == [1, 1]
    assert trainer.predict(model, loader(n=8), return_predictions=False) is None
    assert set(trainer.test(model, loader(n=16), verbose=False)[0]) == {"test_loss"}

    class NoTest(pl.LightningModule):
        pass

    with pytest.raises(NotImplementedError, match="has no test_step"):
        quiet_trainer().test(NoTest(), loader())


def test_reload_dataloaders_every_n_epochs() -> None:
    calls: list[int] = []

    class Reloading(Regressor):
        def train_dataloader(self) -> Any:
            calls.append(self.current_epoch)
            return loader()

    quiet_trainer(max_epochs=4, reload_dataloaders_every_n_epochs=2).fit(Reloading())
    assert calls == [0, 2]


def test_training_step_returning_none_skips_the_update() -> None:
    class Skips(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return None

    model = Skips()
    before = [p.detach().clone() for p in model.parameters()]
    quiet_trainer(limit_train_batches=2).fit(model, loader())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_lbfgs_gets_the_closure() -> None:
    class Lbfgs(Regressor):
        def configure_optimizers(self) -> Any:
            return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=3)

    model = Lbfgs()
    calls: list[int] = []
    original = model.training_step

    def counting(batch: Any, batch_idx: int) -> Any:
        calls.append(batch_idx)
        return original(batch, batch_idx)

    model.training_step = counting  # type: ignore[method-assign]
    quiet_trainer(limit_train_batches=1).fit(model, loader())
    assert len(calls) > 1  # LBFGS evaluated the closure several times
