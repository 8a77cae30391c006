"""Lightning in a sweep trial: a WandbLogger created in the trial joins the trial's run (its
hyperparameters cannot change the sweep's), reports the metric with no callback, and hyperband
stops trainer.fit with the graceful shutdown: the run ends "stopped", its checkpoints kept."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import fulmen as pl  # noqa: E402
from fulmen import track  # noqa: E402
from fulmen.loggers import WandbLogger  # noqa: E402


class Constant(pl.LightningModule):
    """A model whose validation loss is its ``b`` hyperparameter: good (1) or bad (10)."""

    def __init__(self, b: float, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return (self.w - batch[0].mean()) ** 2

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self.hparams.b + 0 * self.w.sum())

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader() -> Any:
    x = torch.randn(8, 1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)


def test_wandb_logger_in_a_trial_joins_the_run_and_hyperband_stops_fit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sweep_id = track.sweep({
        "method": "grid",
        "metric": {"name": "val_loss"},
        "parameters": {"b": {"values": [1.0, 10.0]}, "lr": {"value": 0.05}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 2, "eta": 3},
    }, project="lit")  # fmt: skip
    trainers: list[Any] = []

    def train() -> None:
        logger = WandbLogger(log_model=True)
        config = logger.experiment.config
        checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / f"ckpt-{config.b}"),
                                                  monitor="val_loss", save_last=True)  # fmt: skip
        trainer = pl.Trainer(
            max_epochs=3 if config.b == 1.0 else 500, logger=logger, callbacks=[checkpoint],
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            default_root_dir=str(tmp_path),
        )  # fmt: skip
        trainers.append(trainer)
        # the sweep's lr wins over the model's own (log_hyperparams is ignored for it)
        trainer.fit(Constant(b=config.b, lr=0.5), _loader(), _loader())

    with caplog.at_level(logging.WARNING, logger="fulmen.sweep"):
        track.agent(sweep_id, function=train)
    sweep = track.Api().sweep(f"lit/{sweep_id}")
    assert [t.state for t in sweep.trials] == ["finished", "stopped"]
    good, bad = sweep.runs
    assert (good.state, bad.state) == ("finished", "stopped")
    assert good.id == sweep.trials[0].run_id
    assert good.config["lr"] == 0.05
    assert "Config item 'lr' was locked by 'sweep' (ignored update)." in caplog.text
    assert sweep.trials[0].value == 1.0  # the metric as the WandbLogger logged it
    assert trainers[1].current_epoch < 500
    assert list((tmp_path / "ckpt-10.0").glob("*.ckpt"))  # its checkpoints are kept
    assert any(a.get("type") == "model" for a in bad.artifacts)
