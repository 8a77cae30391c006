"""The Tuner (lr_find, scale_batch_size) and its callbacks, on tiny models on the CPU."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.callbacks import BatchSizeFinder, LearningRateFinder
from fulmen.tuner import Tuner
from tests.train.helpers import Regressor, loader, quiet_trainer, regression_data


class LoaderRegressor(Regressor):
    """A Regressor that builds its own loader with ``self.batch_size``."""

    def __init__(self, lr: float = 0.1, batch_size: int = 4, fail_above: int = 0) -> None:
        super().__init__(lr=lr)
        self.batch_size = batch_size
        self.fail_above = fail_above
        self.sizes_seen: list[int] = []

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(regression_data(64), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(regression_data(16, seed=1), batch_size=self.batch_size)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        size = len(batch[0])
        self.sizes_seen.append(size)
        if self.fail_above and size > self.fail_above:
            # what a device says when a batch does not fit (the edge of the world: memory)
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().training_step(batch, batch_idx)


def test_lr_find_sweeps_exponentially_and_sets_the_suggestion_on_the_model() -> None:
    model = Regressor(lr=0.1)
    trainer = quiet_trainer(max_epochs=1)
    finder = Tuner(trainer).lr_find(
        model, train_dataloaders=loader(256, batch_size=4), num_training=30, max_lr=1.0
    )
    assert finder is not None
    lrs, losses = finder.results["lr"], finder.results["loss"]
    assert 2 < len(lrs) == len(losses) <= 30
    assert lrs[0] == pytest.approx(1e-8)
    assert all(b > a for a, b in itertools.pairwise(lrs))  # rising
    assert lrs[1] / lrs[0] == pytest.approx(lrs[2] / lrs[1])  # geometrically
    suggestion = finder.suggestion()
    assert suggestion is not None
    assert suggestion in lrs
    assert model.hparams.lr == suggestion  # update_attr=True: "lr" found in hparams


def test_lr_find_linear_mode_steps_evenly() -> None:
    finder = Tuner(quiet_trainer(max_epochs=1)).lr_find(
        Regressor(),
        train_dataloaders=loader(256, batch_size=4),
        num_training=20,
        min_lr=1e-4,
        max_lr=1e-2,
        mode="linear",
        early_stop_threshold=None,
        update_attr=False,
    )
    assert finder is not None
    lrs = finder.results["lr"]
    assert len(lrs) == 20
    assert lrs[-1] == pytest.approx(1e-2)
    assert lrs[2] - lrs[1] == pytest.approx(lrs[1] - lrs[0])


def test_lr_find_restores_the_weights_and_leaves_the_trainer_untouched() -> None:
    model = Regressor(lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = quiet_trainer(max_epochs=1)
    callbacks, loggers = list(trainer.callbacks), list(trainer.loggers)
    Tuner(trainer).lr_find(model, train_dataloaders=loader(), num_training=8, update_attr=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert trainer.global_step == 0
    assert trainer.callbacks == callbacks
    assert trainer.loggers == loggers
    assert trainer.optimizers == []
    assert model._trainer is None
    trainer.fit(model, loader())  # the trainer still trains as if nothing happened
    assert trainer.global_step == 8


def test_lr_find_stops_early_when_the_loss_diverges(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fulmen.train"):
        finder = Tuner(quiet_trainer(max_epochs=1)).lr_find(
            Regressor(),
            train_dataloaders=loader(512, batch_size=4),
            num_training=100,
            min_lr=1e-3,
            max_lr=1e4,  # SGD diverges long before this
        )
    assert finder is not None
    assert len(finder.results["lr"]) < 100
    assert "LR finder stopped early" in caplog.text


def test_lr_find_names_the_missing_attribute() -> None:
    class NoLr(Regressor):
        def __init__(self) -> None:
            super().__init__()
            self._hparams.pop("lr")

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(AttributeError, match=r"\['lr', 'learning_rate'\]"):
        Tuner(quiet_trainer(max_epochs=1)).lr_find(NoLr(), train_dataloaders=loader())
    with pytest.raises(AttributeError, match="set to my_lr, but could not find"):
        Tuner(quiet_trainer(max_epochs=1)).lr_find(
            Regressor(), train_dataloaders=loader(), attr_name="my_lr"
        )
    with pytest.raises(ValueError, match="`mode` should be one of"):
        Tuner(quiet_trainer(max_epochs=1)).lr_find(Regressor(), loader(), mode="cubic")


def test_suggestion_without_enough_points_is_none_and_logs_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finder = Tuner(quiet_trainer(max_epochs=1)).lr_find(
        Regressor(), train_dataloaders=loader(), num_training=5, update_attr=False
    )
    assert finder is not None
    with caplog.at_level(logging.ERROR, logger="fulmen.train"):
        assert finder.suggestion() is None
    assert "Failed to compute suggestion for learning rate" in caplog.text


def test_plot_draws_the_sweep_or_names_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    finder = Tuner(quiet_trainer(max_epochs=1)).lr_find(
        Regressor(), train_dataloaders=loader(256, batch_size=4), num_training=20
    )
    assert finder is not None
    try:
        import matplotlib
    except ImportError:
        monkeypatch.setitem(__import__("sys").modules, "matplotlib.pyplot", None)
        with pytest.raises(ModuleNotFoundError, match="matplotlib"):
            finder.plot(suggest=True)
        return
    matplotlib.use("Agg")
    fig = finder.plot(suggest=True)
    assert fig.axes[0].get_xscale() == "log"


def test_scale_batch_size_power_doubles_until_out_of_memory() -> None:
    model = LoaderRegressor(batch_size=4, fail_above=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = quiet_trainer(max_epochs=1)
    found = Tuner(trainer).scale_batch_size(model, mode="power", steps_per_trial=1)
    assert found == 16
    assert model.batch_size == 16
    assert {2, 4, 8, 16, 32} <= set(model.sizes_seen)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert trainer.global_step == 0


def test_scale_batch_size_binsearch_narrows_between_success_and_failure() -> None:
    model = LoaderRegressor(batch_size=4, fail_above=20)
    found = Tuner(quiet_trainer(max_epochs=1)).scale_batch_size(
        model, mode="binsearch", steps_per_trial=1, init_val=4
    )
    assert found == 20
    assert model.batch_size == 20


def test_scale_batch_size_stops_at_the_dataset_size() -> None:
    model = LoaderRegressor(batch_size=4)
    found = Tuner(quiet_trainer(max_epochs=1)).scale_batch_size(model, steps_per_trial=1)
    assert found == 64  # the dataset has 64 samples: a bigger batch is the same batch


def test_scale_batch_size_reads_the_datamodule_and_checks_its_arguments() -> None:
    class Data(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.batch_size = 2

        def train_dataloader(self) -> DataLoader[Any]:
            if self.batch_size > 8:
                raise RuntimeError("CUDA out of memory.")
            return DataLoader(regression_data(64), batch_size=self.batch_size)

    data = Data()
    tuner = Tuner(quiet_trainer(max_epochs=1))
    assert tuner.scale_batch_size(Regressor(), datamodule=data, steps_per_trial=1) == 8
    assert data.batch_size == 8
    with pytest.raises(AttributeError, match="Field bs not found in `model`, `datamodule`"):
        tuner.scale_batch_size(Regressor(), datamodule=data, batch_arg_name="bs")
    with pytest.raises(ValueError, match="`mode` should be either of"):
        tuner.scale_batch_size(Regressor(), datamodule=data, mode="linear")
    with pytest.raises(ValueError, match="cannot be used with dataloaders passed directly"):
        tuner.scale_batch_size(Regressor(), train_dataloaders=loader())


def test_a_non_memory_error_in_a_trial_propagates() -> None:
    class Broken(LoaderRegressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            raise RuntimeError("a bug, not memory")

    with pytest.raises(RuntimeError, match="a bug, not memory"):
        Tuner(quiet_trainer(max_epochs=1)).scale_batch_size(Broken(), steps_per_trial=1)


def test_learning_rate_finder_callback_tunes_then_fits_with_the_new_lr() -> None:
    model = Regressor(lr=0.1)
    finder_cb = LearningRateFinder(num_training_steps=20, min_lr=1e-4, max_lr=1e-1)
    trainer = quiet_trainer(max_epochs=1, callbacks=[finder_cb])
    trainer.fit(model, loader(256, batch_size=4))
    assert finder_cb.optimal_lr is not None
    suggestion = finder_cb.optimal_lr.suggestion()
    assert model.hparams.lr == suggestion
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(suggestion)
    assert trainer.global_step == 64  # the fit itself ran in full after the sweep


def test_batch_size_finder_callback_reloads_the_fit_dataloaders() -> None:
    model = LoaderRegressor(batch_size=2, fail_above=8)
    cb = BatchSizeFinder(steps_per_trial=1)
    trainer = quiet_trainer(max_epochs=1, callbacks=[cb], limit_val_batches=0)
    trainer.fit(model)
    assert cb.optimal_batch_size == 8
    assert trainer.train_dataloader.batch_size == 8
    assert trainer.global_step == 8  # 64 samples / 8


def test_pl_tuner_resolves_like_lightning() -> None:
    assert pl.tuner.Tuner is Tuner
    assert pl.callbacks.LearningRateFinder is LearningRateFinder
