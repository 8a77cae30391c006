"""``fulmen demo``: the README's main job, in one command.

It trains a small classifier on synthetic data (CPU, seconds) with the Trainer and
``WandbLogger``: hyperparameters, per-step and per-epoch metrics, gradient and parameter histograms
from ``watch``, a few predictions per validation epoch as images (``log_image``: each sample's 20
features as a grid of cells, a mask marking the features that decide its class, the prediction
in the caption), and the best and last checkpoints uploaded as versions of artifact
``model-<run id>`` (``log_model=True``). Then ``fulmen ui`` serves the dashboard over the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

from fulmen.loggers import WandbLogger
from fulmen.train import Callback, LightningDataModule, LightningModule, Trainer
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


CELL = 12  # pixels per feature in the prediction images
FEATURE_CLASSES = {0: "other feature", 1: "sum > 0 decides", 2: "> 1 decides"}


class LogPredictions(Callback):
    """The image panel: each validation epoch, the first ``n`` validation samples as images, with
    their true class, the predicted class and its probability in the caption."""

    def __init__(self, n: int = 4) -> None:
        self.n = n

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if batch_idx != 0 or trainer.sanity_checking:
            return
        x, y = batch[0][: self.n], batch[1][: self.n]
        with torch.no_grad():
            probs = torch.softmax(pl_module(x), dim=1)
        # features 0..19 as a 4 x 5 grid of grey cells (low dark, high light)
        grid = (torch.sigmoid(x).view(-1, 4, 5) * 255).to(torch.uint8)
        pixels = grid.repeat_interleave(CELL, 1).repeat_interleave(CELL, 2)
        images = [p.numpy()[..., None].repeat(3, axis=2) for p in pixels]
        deciding = torch.zeros(4, 5, dtype=torch.uint8)
        deciding.view(-1)[:5] = 1
        deciding.view(-1)[5] = 2
        mask = deciding.repeat_interleave(CELL, 0).repeat_interleave(CELL, 1).numpy()
        p, pred = probs.max(dim=1)
        trainer.logger.log_image(
            key="val/predictions",
            images=images,
            caption=[
                f"true {int(t)}, predicted {int(c)} ({float(q):.2f})"
                for t, c, q in zip(y, pred, p, strict=True)
            ],
            masks=[
                {"features": {"mask_data": mask, "class_labels": FEATURE_CLASSES}} for _ in images
            ],
        )


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
        callbacks=[ModelCheckpoint(monitor="val/loss", save_last=True), LogPredictions()],
        enable_progress_bar=not quiet,
        enable_model_summary=not quiet,
    )
    trainer.fit(model, datamodule=DemoData())
    run = logger.experiment
    run_dir = Path(run.dir).parent
    logger.finish()
    return run_dir, f"/local/{PROJECT}/runs/{run.id}"
