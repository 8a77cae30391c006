"""A LightningCLI app: a small classifier on synthetic data, driven by subcommands and YAML.

    python examples/cli/app.py fit --config examples/cli/config.yaml
    python examples/cli/app.py test --config examples/cli/config.yaml --ckpt_path best
    python examples/cli/app.py predict --config examples/cli/config.yaml --ckpt_path best
    python examples/cli/app.py fit --print_config          # the full config, defaults included
    python examples/cli/app.py fit --model.hidden 64 --trainer.max_epochs 5

Every ``__init__`` argument of the model, the datamodule and the Trainer is an option and a key
of the YAML file; ``data.num_classes`` is linked to ``model.num_classes`` (set once, in data).
Port from Lightning: ``import lightning.pytorch as pl`` -> ``import fulmen as pl`` and
``from lightning.pytorch.cli import LightningCLI`` -> ``from fulmen.cli import LightningCLI``.
"""

from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.cli import LightningCLI, cli_lightning_logo


class Classifier(pl.LightningModule):
    """A two-layer network over ``features`` inputs."""

    def __init__(
        self, features: int = 16, hidden: int = 32, num_classes: int = 3, lr: float = 0.05
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss_acc(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        return torch.nn.functional.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss_acc(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, acc = self._loss_acc(batch)
        self.log_dict({"val_loss": loss, "val_acc": acc}, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, acc = self._loss_acc(batch)
        self.log_dict({"test_loss": loss, "test_acc": acc})

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch[0]).argmax(1)

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class Blobs(pl.LightningDataModule):
    """Gaussian blobs, one per class, split into train/val/test/predict sets."""

    def __init__(
        self, samples: int = 512, features: int = 16, num_classes: int = 3, batch_size: int = 32
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.samples, self.features = samples, features
        self.num_classes, self.batch_size = num_classes, batch_size

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(0)
        centers = torch.randn(self.num_classes, self.features, generator=g) * 3
        y = torch.randint(0, self.num_classes, (self.samples,), generator=g)
        x = centers[y] + torch.randn(self.samples, self.features, generator=g)
        n = self.samples // 4
        self.splits = {
            "train": TensorDataset(x[: 2 * n], y[: 2 * n]),
            "val": TensorDataset(x[2 * n : 3 * n], y[2 * n : 3 * n]),
            "test": TensorDataset(x[3 * n :], y[3 * n :]),
        }

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.splits["val"], batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.splits["test"], batch_size=self.batch_size)

    def predict_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.splits["test"], batch_size=self.batch_size)


class BlobsCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        # one source of truth: the data decides the number of classes and features
        parser.link_arguments("data.num_classes", "model.num_classes")
        parser.link_arguments("data.features", "model.features")
        parser.add_lightning_class_args(pl.callbacks.ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val_loss", "checkpoint.save_last": True})


def main(args: list[str] | None = None, run: bool = True) -> BlobsCLI:
    return BlobsCLI(
        Classifier,
        Blobs,
        args=args,
        run=run,
        seed_everything_default=0,
        trainer_defaults={"max_epochs": 3, "enable_progress_bar": False},
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    cli_lightning_logo()
    main()
