"""Training-loop overhead: fulmen's Trainer against a plain PyTorch loop (and PyTorch Lightning when
it is installed), side by side in one run.

Two workloads, each a fixed number of training steps on the CPU, logging one metric every step:

- "mlp": the tiny MLP 32-64-4 of shared/ANCHORS.md, batch 32, 2,000 steps, where the loop's own
  overhead is most of the cost (plain PyTorch ~0.4-0.7 ms a step; Lightning adds 1-2 ms);
- "convnet": a small convnet on 3x32x32 images, batch 32, where the compute dominates.

The plain loop logs by appending ``loss.item()`` to a list; the Trainers log with
``self.log("loss", loss)`` and ``log_every_n_steps=1`` into their default CSVLogger (in a
temporary folder), or into a WandbLogger (offline: fulmen.track, or wandb for Lightning).
Progress bar, model summary, checkpointing and the sanity check are off for both Trainers. The
time measured is the CPU time of one training epoch, from the epoch's start to the end of training
(so the epoch-end logging and the CSV flush are included), per step.

    python benchmarks/bench_train.py [--repeats N] [--warmup 1] [--workload mlp|convnet|both]
                                     [--per-step]

(11 measured rounds for the MLP, whose per-step differences are small against the machine's
noise; 7 for the convnet.)
"""

from __future__ import annotations

import argparse
import itertools
import logging
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


def plain_loop(workload: str) -> Callable[[], float]:
    def run() -> float:
        model = WORKLOADS[workload][0]()
        loader = data(workload)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        losses: list[float] = []
        stamps: list[float] = []
        start = _clock()
        for x, y in loader:
            stamps.append(time.perf_counter())
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if PER_STEP:
            return step_time(stamps)
        return (_clock() - start) / len(loader)

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

    return [
        Case(f"plain PyTorch loop ({workload})", plain_loop(workload)),
        Case(f"fulmen Trainer ({workload})", trainer_case(workload, fulmen)),
        Case(
            f"fulmen Trainer + WandbLogger ({workload})",
            trainer_case(workload, fulmen, fulmen_wandb_logger),
        ),
        Case(f"PyTorch Lightning ({workload})", lightning_case, note="anchor"),
        Case(
            f"PyTorch Lightning + wandb WandbLogger, offline ({workload})",
            lightning_wandb_case,
            note="anchor",
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
            baseline=f"plain PyTorch loop ({workload})",
            unit="µs",
            scale=1e6,
            repeats=11 if workload == "mlp" else 7,
            argv=rest,
        )
