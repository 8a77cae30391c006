"""``fulmen demo``: the README's main job, in one command.

It trains a small classifier on synthetic data (CPU, seconds) with the Trainer and
``WandbLogger``: hyperparameters, per-step and per-epoch metrics, gradient and parameter histograms
from ``watch``, and the best and last checkpoints uploaded as versions of artifact
``model-<run id>`` (``log_model=True``). Then ``fulmen ui`` serves the dashboard over the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

from fulmen.loggers import WandbLogger
from fulmen.train import LightningDataModule, LightningModule, Trainer
from fulmen.train.callbacks import ModelCheckpoint

PROJECT = "fulmen-demo"


class DemoData(LightningDataModule):
    """Three classes from 20 noisy features (the first five decide), fixed seed."""

    def __init__(self, n: int = 3000, batch_size: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.hparams.n, 20, generator=g)
        y = (x[:, :5].sum(dim=1) > 0).long() + (x[:, 5] > 1).long()
        self.train_set, self.val_set = random_split(TensorDataset(x, y), [0.8, 0.2], generator=g)

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val_set, batch_size=500)


class DemoClassifier(LightningModule):
    """A two-layer MLP; logs loss and accuracy per step (train) and per epoch (val)."""

    def __init__(self, hidden: int = 64, lr: float = 5e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(20, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=True)
        self.log(f"{stage}/acc", (logits.argmax(dim=1) == y).float().mean())
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def train_demo(root: Path, *, epochs: int = 6, quiet: bool = False) -> tuple[Path, str]:
    """Train the demo into ``root`` (run folders go to ``root/fulmen``); answer the run folder and
    its dashboard path (``/<entity>/<project>/runs/<id>``)."""
    torch.manual_seed(0)
    logger = WandbLogger(project=PROJECT, save_dir=str(root), log_model=True, mode="offline")
    model = DemoClassifier()
    logger.watch(model, log="all", log_freq=20)
    trainer = Trainer(
        max_epochs=epochs,
        logger=logger,
        log_every_n_steps=5,
        callbacks=[ModelCheckpoint(monitor="val/loss", save_last=True)],
        enable_progress_bar=not quiet,
        enable_model_summary=not quiet,
    )
    trainer.fit(model, datamodule=DemoData())
    run = logger.experiment
    run_dir = Path(run.dir).parent
    logger.finish()
    return run_dir, f"/local/{PROJECT}/runs/{run.id}"
