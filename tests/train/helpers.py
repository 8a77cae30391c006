"""Tiny models and data shared by the fulmen.train tests (small enough for a 2-core CPU)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl


def regression_data(n: int = 64, features: int = 8, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = x.sum(dim=1, keepdim=True) * 0.3 + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def loader(
    n: int = 64, batch_size: int = 8, shuffle: bool = False, seed: int = 0, **kwargs: Any
) -> DataLoader[Any]:
    return DataLoader(
        regression_data(n, seed=seed), batch_size=batch_size, shuffle=shuffle, **kwargs
    )


class Regressor(pl.LightningModule):
    """8 -> 16 -> 1 regression; logs train_loss and val_loss."""

    def __init__(
        self, lr: float = 0.1, dropout: float = 0.0, optimizer: str = "sgd", scheduler: bool = False
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16),
            torch.nn.Tanh(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self(x), y))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        if self.hparams.get("optimizer") == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        else:
            opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        if not self.hparams.get("scheduler"):
            return opt
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)]


def quiet_trainer(**kwargs: Any) -> pl.Trainer:
    """A Trainer on the CPU without the default logger, checkpoints, progress bar and summary (the
    same on a machine with a GPU: these tests compare against CPU tensors)."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "max_epochs": 1,
        "num_sanity_val_steps": 0,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=0, msg=f"weights differ at {key}")
