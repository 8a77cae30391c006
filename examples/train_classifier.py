"""A PyTorch Lightning script, run by fulmen: only the import changed.

A small classifier on synthetic data, with validation, a test run, checkpoints of the best model,
early stopping and a learning-rate schedule. Run it again with ``--resume`` to continue from the
last checkpoint.

    python examples/train_classifier.py [--max-epochs 5] [--root runs] [--resume]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

import fulmen as pl  # was: import pytorch_lightning as pl


class Data(pl.LightningDataModule):
    def __init__(self, n: int = 2048, batch_size: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.hparams.n, 20, generator=g)
        y = (x[:, :5].sum(dim=1) > 0).long() + (x[:, 5] > 1).long()
        self.train_set, self.val_set, self.test_set = random_split(
            TensorDataset(x, y), [0.7, 0.15, 0.15], generator=g
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.test_set, batch_size=256)


class Classifier(pl.LightningModule):
    def __init__(self, hidden: int = 64, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(20, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        self.log(f"{stage}_loss", loss, prog_bar=True)
        self.log(f"{stage}_acc", accuracy, prog_bar=stage != "train")
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"},
        }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--root", default="runs")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-progress-bar", action="store_true")
    args = parser.parse_args(argv)

    pl.seed_everything(42)
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=f"{args.root}/checkpoints",
        filename="{epoch}-{val_loss:.3f}",
        monitor="val_loss",
        save_last=True,
    )
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        default_root_dir=args.root,
        callbacks=[checkpoint, pl.callbacks.EarlyStopping("val_loss", patience=3)],
        enable_progress_bar=not args.no_progress_bar,
        log_every_n_steps=10,
    )
    data = Data()
    trainer.fit(Classifier(), datamodule=data, ckpt_path="last" if args.resume else None)
    (results,) = trainer.test(datamodule=data, ckpt_path="best")
    return results


if __name__ == "__main__":
    print(main())
