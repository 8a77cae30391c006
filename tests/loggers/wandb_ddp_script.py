"""Two DDP ranks (launched directly: fulmen starts rank 1) training with one ``WandbLogger``.

``python wandb_ddp_script.py OUT``: writes its run under ``OUT`` and ``OUT/rank<N>.json`` with what
each rank's logger saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.loggers import WandbLogger


class Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)
        self.save_hyperparameters({"width": 4, "optimizer": {"name": "sgd", "lr": 0.1}})

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        self.log("rank_mean", float(self.global_rank), sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_rank_sum", float(self.global_rank), sync_dist=True, reduce_fx="sum")

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(out: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    logger = WandbLogger(project="ddp", save_dir=str(out), id="ddprun")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=2,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Model(), DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    report = {
        "rank": trainer.global_rank,
        "version": logger.version,
        "run_created": logger.experiment.__class__.__name__,
        "global_step": trainer.global_step,
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
