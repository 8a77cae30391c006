"""A training script for the DDP tests: run directly, under torchrun, with SLURM variables, or
with ddp_spawn. ``python ddp_script.py OUT MODE``; every rank writes ``OUT/rank<N>.json``.

Modes: ``full`` (parity with and without accumulation, sync_dist values, CSVLogger, checkpoints,
gathered predictions), ``quick`` (parity only), ``raise`` (rank 1 fails mid-training),
``raise0`` (rank 0 fails), ``die`` (rank 1 exits at once with code 3), ``spawn`` (quick with
strategy="ddp_spawn").
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.train import CSVLogger
from fulmen.train.strategy import DDPStrategy

N, FEATURES = 32, 4


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=g)
    return TensorDataset(x, x.sum(dim=1, keepdim=True) * 0.5)


class Model(pl.LightningModule):
    def __init__(self, fail_rank: int = -1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(FEATURES, 1)
        self.fail_rank = fail_rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.global_rank == self.fail_rank and batch_idx == 2:
            raise RuntimeError(f"rank {self.global_rank} fails on purpose")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        self.log("rank_step", float(self.global_rank), sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        value = 10.0 * self.global_rank + batch_idx
        for fx in ("mean", "sum", "max", "min"):
            self.log(f"v_{fx}", value, sync_dist=True, reduce_fx=fx)
        self.log("v_local", value, reduce_fx="sum")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return batch[0][:, 0]

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def train(strategy: Any, devices: int, batch_size: int, accumulate: int, **kw: Any) -> Model:
    model = Model(kw.pop("fail_rank", -1))
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": devices,
        "strategy": strategy,
        "max_epochs": 2,
        "accumulate_grad_batches": accumulate,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **kw,
    }
    trainer = pl.Trainer(**options)
    trainer.fit(model, DataLoader(dataset(), batch_size=batch_size), None)
    return model


def weights(model: torch.nn.Module) -> list[float]:
    return [float(v) for p in model.parameters() for v in p.detach().flatten()]


def ddp(**kw: Any) -> DDPStrategy:
    return DDPStrategy(timeout=timedelta(seconds=60), **kw)


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2]
    report: dict[str, Any] = {"env_rank": os.environ.get("RANK")}
    if mode == "die" and os.environ.get("LOCAL_RANK") == "1":
        os._exit(3)  # the second process dies before it joins: the first waits in rendezvous
    if mode in ("raise", "raise0", "die"):
        train(ddp(), 2, 4, 1, fail_rank=1 if mode == "raise" else 0, max_epochs=50)
    strategy: Any = "ddp_spawn" if mode == "spawn" else ddp()
    model = train(strategy, 2, 4, 1)
    report["weights"] = weights(model)
    if mode == "full":
        report["weights_acc2"] = weights(train(ddp(), 2, 4, 2))
        logger = CSVLogger(out / "logs", name="ddp")
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=2,
            strategy=ddp(),
            max_epochs=1,
            logger=logger,
            log_every_n_steps=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=out / "root",
        )
        loaders = DataLoader(dataset(), batch_size=4)
        trainer.fit(Model(), loaders, DataLoader(dataset(), batch_size=4))
        report["validate"] = trainer.validate(
            Model(), DataLoader(dataset(), batch_size=4), verbose=False
        )
        report["ranks"] = [trainer.global_rank, trainer.local_rank, trainer.node_rank]
        report["world_size"] = trainer.world_size
        report["is_global_zero"] = trainer.is_global_zero
        report["best"] = trainer.checkpoint_callback.best_model_path
        report["broadcast"] = trainer.strategy.broadcast(f"from {trainer.global_rank}")
        gathered = trainer.strategy.all_gather(torch.tensor([float(trainer.global_rank)]))
        report["all_gather"] = gathered.flatten().tolist()
        module = trainer.lightning_module
        both = module.all_gather({"rank": torch.tensor(float(trainer.global_rank))})
        report["module_all_gather"] = both["rank"].tolist()
        predictions = trainer.predict(
            Model(), DataLoader(dataset(), batch_size=1), gather_predictions=True
        )
        report["predictions"] = [float(p) for p in torch.cat(predictions)]
        report["local_predictions"] = len(trainer.predict(Model(), DataLoader(dataset())))
    rank = int(os.environ.get("RANK", "0"))
    (out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
