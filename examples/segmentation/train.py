"""Semantic segmentation with Lightning, tracked like a W&B report: a small U-Net on street scenes.

The scenes are drawn at run time with numpy (no download): sky, buildings, vegetation, a road
with sidewalks, cars and people, each class a colour family with noise and texture, so that the
model has to look at colour and shape. Every validation epoch the model logs its per-class IoU
(``self.log``), and a callback logs a few frames with their true and predicted masks
(``WandbLogger.log_image``) and a table of per-image IoU whose cells are the frames with masks
(``WandbLogger.log_table``). ``log_model`` uploads the best checkpoint as an artifact, ``watch``
records gradient and parameter histograms. docs/examples.md walks through the dashboard.

    python examples/segmentation/train.py [--epochs 8] [--root runs] [--online]
    fulmen ui runs                  # then open the run page it prints
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl  # was: import pytorch_lightning as pl
import fulmen.track as wandb  # was: import wandb
from fulmen.loggers import WandbLogger

CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON = range(len(CLASSES))
LABELS = dict(enumerate(CLASSES))
# the mean colour of each class (RGB, 0..1); every object gets its own shade and noise
COLORS = np.array(
    [
        [0.35, 0.33, 0.36],  # road: grey asphalt
        [0.62, 0.55, 0.52],  # sidewalk: light paving
        [0.55, 0.35, 0.25],  # building: brick
        [0.20, 0.50, 0.18],  # vegetation: green
        [0.45, 0.65, 0.90],  # sky: blue
        [0.75, 0.15, 0.15],  # car: painted (the shade varies a lot per car)
        [0.90, 0.75, 0.35],  # person: clothes and skin
    ]
)


def draw_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: an image (3, h, w) float32 in [0, 1] and its label map (h, w) int64."""
    label = np.full((h, w), SKY, np.int64)
    horizon = int(h * rng.uniform(0.35, 0.5))
    ys, xs = np.mgrid[0:h, 0:w]
    # buildings: blocks standing on the horizon, some tall
    x = 0
    while x < w:
        width = int(rng.integers(w // 8, w // 3))
        top = int(rng.integers(2, max(3, horizon - 2)))
        label[top : horizon + 2, x : x + width] = BUILDING
        x += width + int(rng.integers(0, w // 10))
    # trees: round crowns in front of the buildings
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.integers(0, w), horizon - rng.integers(0, h // 6)
        r = rng.integers(h // 12, h // 6)
        label[(xs - cx) ** 2 + (ys - cy) ** 2 < r**2] = VEGETATION
    # the road: a trapezoid from the horizon to the bottom, sidewalks on both sides
    centre = w * rng.uniform(0.4, 0.6)
    half = (ys - horizon).clip(0) / max(1, h - horizon) * w * 0.45 + 2
    ground = ys >= horizon
    label[ground] = SIDEWALK
    label[ground & (np.abs(xs - centre) < half)] = ROAD
    label[ground & (np.abs(xs - centre) > half * 1.6)] = VEGETATION  # grass verge
    # cars on the road (bigger when nearer), people on the sidewalks
    for _ in range(int(rng.integers(1, 4))):
        y = int(rng.integers(horizon + 2, h - 2))
        scale = (y - horizon) / max(1, h - horizon)
        cw, ch = max(3, int(w * 0.25 * scale + 3)), max(2, int(h * 0.12 * scale + 2))
        cx = int(centre + rng.uniform(-0.6, 0.6) * half[y, 0] - cw / 2)
        label[max(horizon, y - ch) : y, max(0, cx) : max(0, cx + cw)] = CAR
    for _ in range(int(rng.integers(1, 4))):
        y = int(rng.integers(horizon + 3, h))
        scale = (y - horizon) / max(1, h - horizon)
        pw, ph = max(1, int(w * 0.03 * scale + 1)), max(3, int(h * 0.22 * scale + 3))
        side = 1 if rng.random() < 0.5 else -1
        px = int(centre + side * half[y - 1, 0] * rng.uniform(1.05, 1.5))
        label[max(horizon - 2, y - ph) : y, max(0, px) : max(0, px + pw)] = PERSON
    # colours: per class a shade for this scene, per pixel noise, a little texture
    shade = COLORS + rng.normal(0, 0.06, COLORS.shape)
    shade[CAR] = rng.uniform(0.1, 0.9, 3)  # cars come in every colour, but not grey-blue-green
    shade[CAR, 0] = max(shade[CAR, 0], 0.6)
    image = shade[label] + rng.normal(0, 0.05, (h, w, 3))
    image[label == BUILDING] *= 0.85 + 0.15 * ((ys[label == BUILDING] % 6) > 1)[:, None]  # windows
    return image.clip(0, 1).astype(np.float32).transpose(2, 0, 1), label


def scenes(n: int, h: int, w: int, seed: int) -> TensorDataset:
    rng = np.random.default_rng(seed)
    pairs = [draw_scene(rng, h, w) for _ in range(n)]
    images = torch.from_numpy(np.stack([p[0] for p in pairs]))
    labels = torch.from_numpy(np.stack([p[1] for p in pairs]))
    return TensorDataset(images, labels)


class Streets(pl.LightningDataModule):
    def __init__(self, train: int = 256, val: int = 64, height: int = 48, width: int = 64,
                 batch_size: int = 16) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.train_set = scenes(hp.train, hp.height, hp.width, seed=0)
        self.val_set = scenes(hp.val, hp.height, hp.width, seed=1)

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val_set, batch_size=64)


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class UNet(pl.LightningModule):
    """A two-level U-Net: encoder blocks, a bottleneck, decoder blocks with skip connections."""

    def __init__(self, width: int = 8, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        c = width
        self.down1, self.down2, self.bottom = block(3, c), block(c, 2 * c), block(2 * c, 4 * c)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2), block(4 * c, 2 * c)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2), block(2 * c, c)
        self.head = nn.Conv2d(c, len(CLASSES), 1)
        self.pool = nn.MaxPool2d(2)
        self.confusion = torch.zeros(len(CLASSES), len(CLASSES), dtype=torch.long)
        self.class_weight = torch.ones(len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        b = self.bottom(self.pool(d2))
        u2 = self.dec2(torch.cat([self.up2(b), d2], dim=1))
        u1 = self.dec1(torch.cat([self.up1(u2), d1], dim=1))
        out: torch.Tensor = self.head(u1)
        return out

    def on_fit_start(self) -> None:
        # cars and people cover a few percent of the pixels: weigh each class by the inverse
        # square root of its share of the training pixels, or the model never draws them
        labels = self.trainer.datamodule.train_set.tensors[1]
        share = torch.bincount(labels.flatten(), minlength=len(CLASSES)).double() / labels.numel()
        weight = share.clamp_min(1e-4).rsqrt()
        self.class_weight = (weight / weight.mean()).float()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y, weight=self.class_weight)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.confusion.zero_()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), prog_bar=True)
        pred = logits.argmax(dim=1)
        k = len(CLASSES)
        pairs = y.flatten() * k + pred.flatten()  # (truth, prediction) as one index
        self.confusion += torch.bincount(pairs, minlength=k * k).view(k, k)

    def on_validation_epoch_end(self) -> None:
        iou = per_class_iou(self.confusion)
        for name, value in zip(CLASSES, iou, strict=True):
            self.log(f"val/iou_{name}", float(value))
        self.log("val/mean_iou", float(np.nanmean(iou)), prog_bar=True)

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def per_class_iou(confusion: torch.Tensor) -> np.ndarray:
    """IoU per class from a confusion matrix (rows: truth, columns: prediction); NaN for a class
    that is neither in the truth nor in the prediction."""
    c = confusion.double().numpy()
    tp = np.diag(c)
    union = c.sum(0) + c.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


class LogPredictions(pl.Callback):
    """Each validation epoch: ``frames`` images with their true and predicted masks, and a table
    of per-image IoU whose cells are the images (with both masks) — through the WandbLogger."""

    def __init__(self, frames: int = 4, rows: int = 16) -> None:
        self.frames, self.rows = frames, rows

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if batch_idx != 0 or trainer.sanity_checking:
            return
        x, y = batch
        with torch.no_grad():
            pred = pl_module(x).argmax(dim=1)
        images = list(x[: self.rows])
        truth, guess = y[: self.rows].numpy(), pred[: self.rows].numpy()

        def masks(i: int) -> dict[str, Any]:
            return {
                "predictions": {"mask_data": guess[i].astype(np.uint8), "class_labels": LABELS},
                "ground_truth": {"mask_data": truth[i].astype(np.uint8), "class_labels": LABELS},
            }

        n = min(self.frames, len(images))
        logger = trainer.logger
        logger.log_image(
            key="val/predictions",
            images=images[:n],
            masks=[masks(i) for i in range(n)],
            caption=[f"frame {i}" for i in range(n)],
        )
        rows = []
        for i in range(len(images)):
            k = len(CLASSES)
            conf = torch.bincount(
                torch.from_numpy(truth[i].flatten() * k + guess[i].flatten()), minlength=k * k
            ).view(k, k)
            iou = per_class_iou(conf)
            per_class = [None if np.isnan(v) else round(float(v), 4) for v in iou]
            cell = wandb.Image(images[i], masks=masks(i))
            rows.append([i, cell, round(float(np.nanmean(iou)), 4), *per_class])
        logger.log_table(
            key="val/per_image_iou",
            columns=["frame", "image", "mean_iou", *(f"iou_{c}" for c in CLASSES)],
            data=rows,
        )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train", type=int, default=256, help="training scenes")
    parser.add_argument("--val", type=int, default=64, help="validation scenes")
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--channels", type=int, default=8, help="U-Net width")
    parser.add_argument("--root", default="runs", help="where the run folders go")
    parser.add_argument("--online", action="store_true", help="upload live (FULMEN_BASE_URL)")
    parser.add_argument("--watch-freq", type=int, default=25, help="histograms every N steps")
    # this model is too small to gain from more threads, and on a busy machine extra threads
    # spin: 2 threads ran 20x slower than 1 on the shared 2-core machine this was written on
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    logger = WandbLogger(project="segmentation", save_dir=args.root, log_model=True,
                         mode="online" if args.online else "offline")  # fmt: skip
    model = UNet(width=args.channels)
    logger.watch(model, log="all", log_freq=args.watch_freq)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        logger=logger,
        log_every_n_steps=5,
        callbacks=[
            LogPredictions(),
            pl.callbacks.ModelCheckpoint(monitor="val/mean_iou", mode="max"),
        ],
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=Streets(args.train, args.val, args.height, args.width))
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    run_dir = Path(logger.experiment.dir).parent
    logger.finish()
    print(f"mean IoU {metrics.get('val/mean_iou', float('nan')):.3f} after {args.epochs} epochs "
          f"in {seconds:.0f} s; run folder {run_dir}")  # fmt: skip
    return metrics


if __name__ == "__main__":
    main()
