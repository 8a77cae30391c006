"""LightningModule and LightningDataModule: hyperparameters, optimizers in every form, manual
optimization, load_from_checkpoint."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
import torch

import fulmen as pl
from tests.train.helpers import Regressor, loader, quiet_trainer


class WithArgs(pl.LightningModule):
    def __init__(self, width: int = 4, name: str = "x", net: Any = None, **extra: Any) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.layer = torch.nn.Linear(8, width)


def test_save_hyperparameters_collects_init_args_with_ignore_and_kwargs() -> None:
    model = WithArgs(width=3, net=object(), seed=5)
    assert model.hparams == {"width": 3, "name": "x", "seed": 5}
    assert model.hparams.width == 3
    model.hparams.width = 7
    assert model.hparams_initial.width == 3


def test_save_hyperparameters_with_names_or_a_dict() -> None:
    class Named(pl.LightningModule):
        def __init__(self, a: int, b: int) -> None:
            super().__init__()
            self.save_hyperparameters("a")

    class FromDict(pl.LightningModule):
        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__()
            self.save_hyperparameters(config)

    assert Named(1, 2).hparams == {"a": 1}
    assert FromDict({"lr": 0.1}).hparams == {"lr": 0.1}
    ns = Namespace(depth=2)

    class FromNamespace(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters(ns)

    assert FromNamespace().hparams == {"depth": 2}

    class Wrong(pl.LightningModule):
        def __init__(self, a: int) -> None:
            super().__init__()
            self.save_hyperparameters("c")

    with pytest.raises(ValueError, match=r"\['c'\] are not arguments"):
        Wrong(1)


def test_hparams_go_to_the_loggers_unless_logger_false() -> None:
    from tests.train.test_logging import Recorder

    class Hidden(Regressor):
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__(lr=lr)
            self.save_hyperparameters(logger=False)  # replaces what Regressor saved

    recorder = Recorder()
    quiet_trainer(logger=recorder, limit_train_batches=1).fit(Regressor(lr=0.2), loader())
    assert recorder.hparams == [{"lr": 0.2, "dropout": 0.0, "optimizer": "sgd", "scheduler": False}]
    recorder = Recorder()
    quiet_trainer(logger=recorder, limit_train_batches=1).fit(Hidden(), loader())
    assert recorder.hparams == [{}]


def test_load_from_checkpoint_rebuilds_from_hparams_with_overrides(tmp_path: Path) -> None:
    model = Regressor(lr=0.3, dropout=0.1)
    trainer = quiet_trainer(limit_train_batches=2)
    trainer.fit(model, loader())
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = Regressor.load_from_checkpoint(tmp_path / "m.ckpt", dropout=0.0)
    assert loaded.hparams.lr == 0.3
    assert loaded.hparams.dropout == 0.0
    for a, b in zip(model.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)


class Forms(Regressor):
    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=1.0)
        step = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
        return {
            "optimizer": opt,
            "list": [opt],
            "tuple": ([opt], [step]),
            "dict": {"optimizer": opt, "lr_scheduler": step},
            "dict-step": {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": step, "interval": "step", "frequency": 2},
            },
            "plateau": {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": plateau, "monitor": "const"},
            },
            "dicts": [{"optimizer": opt, "lr_scheduler": step}],
        }[self.form]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.log("const", 1.0, on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize(
    ("form", "lr"),
    [
        ("optimizer", 1.0),
        ("list", 1.0),
        ("tuple", 0.25),
        ("dict", 0.25),
        ("dict-step", 1.0 * 0.5**4),  # 8 steps, every 2nd steps the scheduler
        ("plateau", 0.5),  # "const" never improves after epoch 0: one reduction (patience 0)
        ("dicts", 0.25),
    ],
)
def test_configure_optimizers_in_every_lightning_form(form: str, lr: float) -> None:
    model = Forms(form)
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=4)
    trainer.fit(model, loader())
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(lr)
    scheduler = model.lr_schedulers()
    assert (scheduler is None) == (form in ("optimizer", "list"))


def test_manual_optimization_with_two_optimizers() -> None:
    class TwoOpt(Regressor):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> None:
            first, second = self.optimizers()
            x, y = batch
            for opt in (first, second):
                self.toggle_optimizer(opt)
                opt.zero_grad()
                self.manual_backward(torch.nn.functional.mse_loss(self(x), y))
                opt.step()
                self.untoggle_optimizer(opt)
            self.lr_schedulers().step()

        def configure_optimizers(self) -> Any:
            a = torch.optim.SGD(self.net[0].parameters(), lr=0.1)
            b = torch.optim.SGD(self.net[3].parameters(), lr=0.1)
            return [a, b], [torch.optim.lr_scheduler.StepLR(a, 1, gamma=0.5)]

    model = TwoOpt()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = quiet_trainer(limit_train_batches=3)
    trainer.fit(model, loader())
    assert trainer.global_step == 6  # every optimizer step counts, as in Lightning
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_datamodule_hooks_and_state() -> None:
    calls: list[str] = []

    class Data(pl.LightningDataModule):
        def __init__(self, batch_size: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()

        def prepare_data(self) -> None:
            calls.append("prepare_data")

        def setup(self, stage: str) -> None:
            calls.append(f"setup:{stage}")

        def train_dataloader(self) -> Any:
            return loader(batch_size=self.hparams.batch_size)

        def val_dataloader(self) -> Any:
            return loader(n=16)

        def teardown(self, stage: str) -> None:
            calls.append(f"teardown:{stage}")

        def state_dict(self) -> dict[str, Any]:
            return {"seen": len(calls)}

    trainer = quiet_trainer(limit_train_batches=2)
    data = Data(batch_size=4)
    trainer.fit(Regressor(), datamodule=data)
    assert calls == ["prepare_data", "setup:fit", "teardown:fit"]
    assert trainer.datamodule is data
    assert trainer.num_training_batches == 2
    assert trainer.estimated_stepping_batches == 2


def test_module_properties_follow_the_trainer() -> None:
    model = Regressor()
    with pytest.raises(RuntimeError, match="is not attached to a `Trainer`"):
        _ = model.trainer
    assert model.global_step == 0
    assert model.device == torch.device("cpu")
    trainer = quiet_trainer(limit_train_batches=2)
    trainer.fit(model, loader())
    assert model.trainer is trainer
    assert model.global_step == 2
    assert model.current_epoch == 1
    assert model.logger is None
    assert model.loggers == []
