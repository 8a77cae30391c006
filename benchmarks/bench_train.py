"""Training-loop overhead: fulmen's Trainer against a plain PyTorch loop (and PyTorch Lightning when
it is installed), side by side in one run.

Two workloads, each a fixed number of training steps on the CPU, logging one metric every step:

- "mlp": the tiny MLP 32-64-4 of shared/ANCHORS.md, batch 32, 2,000 steps, where the loop's own
  overhead is most of the cost (plain PyTorch ~0.35-0.7 ms a step; Lightning adds 1-2 ms);
- "convnet": a small convnet on 3x32x32 images, batch 32, where the compute dominates.

Logging is held equal: each Trainer case is compared with a plain loop that logs the same metric to
the same destination every step, so the ratio is what the Trainer and its logger add.

- the Trainers log with ``self.log("loss", loss)`` and ``log_every_n_steps=1`` into their default
  CSVLogger (in a temporary folder), compared with a plain loop that writes a CSV row per step;
- fulmen's Trainer into a WandbLogger (offline: fulmen.track), compared with a plain loop calling
  fulmen.track's ``run.log`` per step; Lightning into wandb's WandbLogger (offline), compared with
  a plain loop calling ``wandb.log`` per step (the plain loop of shared/ANCHORS.md logs to W&B);
- a plain loop that only keeps ``loss.item()`` in a list is the report's reference: the table's
  JSON twin holds every case's ratio to it too (``ratio_to_report_baseline``).

Progress bar, model summary, checkpointing and the sanity check are off for both Trainers. The
time measured is the CPU time of one training epoch, from the epoch's start to the end of training
(so the epoch-end logging and the CSV flush are included), per step.

    python benchmarks/bench_train.py [--repeats N] [--warmup 1] [--processes N]
                                     [--workload mlp|convnet|both] [--per-step]

(The MLP: 3 processes x 7 measured rounds, its per-step differences being small against the
machine's noise and against where the code lands in memory in one process; the convnet: 7 rounds.)
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.harness import Case, Unavailable, main

# wandb offline for both of its cases (and quiet): without an account it would otherwise ask for one
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)  # a 2-core machine shared with others: one thread is the steadiest

# CPU time of this process, not wall time: on a shared machine, other processes' load would
# otherwise dominate the spread. Everything measured runs in this process (no dataloader workers).
_clock = time.process_time


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))


def convnet() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    )


WORKLOADS: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], int, int]] = {
    # name: (model, input shape, classes, steps)
    # 2,000 steps: long enough that what a run does once (the logger's run, its metadata taken
    # by a background thread a moment after it starts) weighs per step about what it weighs in
    # real training, not 5x more
    "mlp": (mlp, (32,), 4, 2000),
    "convnet": (convnet, (3, 32, 32), 10, 30),
}


def data(workload: str) -> DataLoader[Any]:
    _, shape, classes, steps = WORKLOADS[workload]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(steps * 32, *shape, generator=g)
    y = torch.randint(0, classes, (steps * 32,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=32)


# --per-step: each case returns the median of its step-to-step wall times instead (a timestamp at
# the start of every step, taken the same way by the plain loop and by training_step): the steady
# state, which bursts of other work on the machine barely move. It leaves out what happens every
# hundred steps or once an epoch (the CSV flush, the epoch-end row), which the default includes.
PER_STEP = False


def step_time(stamps: list[float]) -> float:
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


# What each plain loop does with the loss every step, given the temporary folder: (log(step,
# loss), close). Logging is held equal on both sides: each Trainer case is compared with the plain
# loop that logs the same metric to the same destination every step (the plain loop of
# shared/ANCHORS.md logs to W&B: that is why it measures 620-790 us a step, where a loop that only
# keeps loss.item() measures about half).
Sink = Callable[[str], tuple[Callable[[int, float], Any], Callable[[], Any]]]


def list_sink(root: str) -> tuple[Callable[[int, float], Any], Callable[[], Any]]:
    """loss.item() kept in a list: the least a loop can do with the loss."""
    losses: list[float] = []
    return (lambda step, loss: losses.append(loss)), losses.clear


def csv_sink(root: str) -> tuple[Callable[[int, float], Any], Callable[[], Any]]:
    """A row per step to a CSV file (what the default CSVLogger writes)."""
    f = open(Path(root) / "metrics.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
    writer = csv.writer(f)
    writer.writerow(("step", "loss"))
    return (lambda step, loss: writer.writerow((step, loss))), f.close


def track_sink(root: str) -> tuple[Callable[[int, float], Any], Callable[[], Any]]:
    """fulmen.track's run.log every step (what a plain loop with the tracker does)."""
    from fulmen import track

    run = track.init(project="lightning_logs", dir=root, mode="offline")
    return (lambda step, loss: run.log({"loss": loss})), run.finish


def wandb_sink(root: str) -> tuple[Callable[[int, float], Any], Callable[[], Any]]:
    try:
        import wandb
    except ImportError as exc:
        raise Unavailable(f"not installed ({exc})") from exc
    run = wandb.init(project="lightning_logs", dir=root, mode="offline")
    return (lambda step, loss: run.log({"loss": loss})), run.finish


def plain_loop(workload: str, sink: Sink = list_sink) -> Callable[[], float]:
    def run() -> float:
        model = WORKLOADS[workload][0]()
        loader = data(workload)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        stamps: list[float] = []
        with tempfile.TemporaryDirectory() as root:
            log, close = sink(root)
            start = _clock()
            for step, (x, y) in enumerate(loader):
                stamps.append(time.perf_counter())
                loss = torch.nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                log(step, loss.item())
            seconds = _clock() - start
            close()  # (not timed, as the Trainers' logger finalization is not)
        if PER_STEP:
            return step_time(stamps)
        return seconds / len(loader)

    return run


def trainer_case(
    workload: str, pl: Any, make_logger: Callable[[str], Any] | None = None
) -> Callable[[], float]:
    """One epoch with ``pl`` (fulmen or pytorch_lightning), timed by a callback; ``make_logger``
    (given the temporary folder) replaces the default CSVLogger."""

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = WORKLOADS[workload][0]()
            self.stamps: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.stamps.append(time.perf_counter())
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.model(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.start = _clock()

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.seconds = _clock() - self.start

    def run() -> float:
        clock = Clock()
        loader = data(workload)
        with tempfile.TemporaryDirectory() as root:
            logger = make_logger(root) if make_logger is not None else True
            trainer = pl.Trainer(
                logger=logger,
                max_epochs=1,
                default_root_dir=root,
                log_every_n_steps=1,
                enable_progress_bar=False,
                enable_model_summary=False,
                enable_checkpointing=False,
                num_sanity_val_steps=0,
                accelerator="cpu",
                devices=1,
                callbacks=[clock],
            )
            module = Module()
            trainer.fit(module, loader)
            finish = getattr(getattr(logger, "experiment", None), "finish", None)
            if finish is not None:  # end the tracker run (not timed)
                finish()
        if PER_STEP:
            return step_time(module.stamps)
        return clock.seconds / len(loader)

    return run


def lightning(workload: str) -> Callable[[], float]:
    try:
        import pytorch_lightning
    except ImportError as exc:
        raise Unavailable(f"not installed ({exc})") from exc
    return trainer_case(workload, pytorch_lightning)


def fulmen_wandb_logger(root: str) -> Any:
    from fulmen.loggers import WandbLogger

    return WandbLogger(save_dir=root, offline=True)


def lightning_wandb(workload: str) -> Callable[[], float]:
    try:
        import pytorch_lightning
        import wandb  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"not installed ({exc})") from exc

    def make(root: str) -> Any:
        return pytorch_lightning.loggers.WandbLogger(save_dir=root, offline=True)

    return trainer_case(workload, pytorch_lightning, make)


def cases(workload: str) -> list[Case]:
    import fulmen

    def lightning_case() -> float:
        return lightning(workload)()

    def lightning_wandb_case() -> float:
        return lightning_wandb(workload)()

    plain_csv = f"plain PyTorch loop + CSV rows ({workload})"
    plain_track = f"plain PyTorch loop + fulmen.track ({workload})"
    plain_wandb = f"plain PyTorch loop + wandb, offline ({workload})"
    return [
        Case(f"plain PyTorch loop, loss kept in a list ({workload})", plain_loop(workload)),
        Case(plain_csv, plain_loop(workload, csv_sink)),
        Case(f"fulmen Trainer ({workload})", trainer_case(workload, fulmen), baseline=plain_csv),
        Case(plain_track, plain_loop(workload, track_sink)),
        Case(
            f"fulmen Trainer + WandbLogger ({workload})",
            trainer_case(workload, fulmen, fulmen_wandb_logger),
            baseline=plain_track,
        ),
        Case(f"PyTorch Lightning ({workload})", lightning_case, note="anchor", baseline=plain_csv),
        Case(plain_wandb, plain_loop(workload, wandb_sink), note="anchor"),
        Case(
            f"PyTorch Lightning + wandb WandbLogger, offline ({workload})",
            lightning_wandb_case,
            note="anchor",
            baseline=plain_wandb,
        ),
    ]


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    for name in ("lightning", "pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workload", choices=["mlp", "convnet", "both"], default="both")
    parser.add_argument("--per-step", action="store_true")
    known, rest = parser.parse_known_args()
    PER_STEP = known.per_step
    for workload in ("mlp", "convnet") if known.workload == "both" else (known.workload,):
        main(
            f"train_{workload}" + ("_per_step" if PER_STEP else ""),
            f"Training-loop time per step, {workload}, CPU, logging every step"
            + (" (steady state: median step-to-step wall time)" if PER_STEP else ""),
            cases(workload),
            baseline=f"plain PyTorch loop, loss kept in a list ({workload})",
            unit="µs",
            scale=1e6,
            repeats=7,
            processes=3 if workload == "mlp" else 1,
            argv=rest,
        )
