"""The training program of the sweep: a Lightning classifier on synthetic data, logged by
``WandbLogger(log_model=True)``. The agent runs it as ``python train.py --lr=... --batch_size=...``
(the sweep config's default command); inside the trial the run is the sweep's and its config holds
the sweep's parameters. It runs on its own too: ``python train.py --lr 0.01``.

    python train.py [--lr 0.01] [--batch_size 64] [--hidden 64] [--dropout 0.1]
                    [--max-epochs 10] [--n 4096]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

import fulmen as pl
from fulmen.loggers import WandbLogger


class Classifier(pl.LightningModule):
    def __init__(self, lr: float, batch_size: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(20, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, 3),
        )

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, on_epoch=True, on_step=False)
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def data(n: int, batch_size: int) -> tuple[DataLoader[Any], DataLoader[Any]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 20, generator=g)
    y = (x[:, :5].sum(dim=1) > 0).long() + (x[:, 5] > 1).long()
    train, val = random_split(TensorDataset(x, y), [0.8, 0.2], generator=g)
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size=512)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--n", type=int, default=4096)
    args = parser.parse_args(argv)

    pl.seed_everything(0)
    logger = WandbLogger(project="sweep-example", log_model=True)
    config = logger.experiment.config  # in a trial: the sweep's parameters (locked)
    hp = {k: config.get(k, getattr(args, k)) for k in ("lr", "batch_size", "hidden", "dropout")}
    train, val = data(args.n, int(hp["batch_size"]))
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=logger,
        callbacks=[pl.callbacks.ModelCheckpoint(monitor="val_loss")],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Classifier(**hp), train, val)
    return float(trainer.callback_metrics["val_loss"])


if __name__ == "__main__":
    print(main())
