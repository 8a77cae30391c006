"""DDP throughput on the CPU: the same training (same global batch, same samples) on 1 process and
on 2 processes (gloo), side by side in one run.

Each measurement starts a fresh job (``python bench_ddp.py --worker N OUT``: fulmen launches the
second process itself) and reports the wall time of training only, from ``on_train_start`` to
``on_train_end`` on rank zero: process start, imports and the rendezvous are excluded (they are
a one-off cost of a few seconds, printed separately). Each process uses one thread, so 2
processes use the 2 cores. The workload: an MLP 256-512-512-10, global batch 512 (2 x 256 under
DDP), 16,384 samples per epoch, one epoch.

    python benchmarks/bench_ddp.py [--repeats 3] [--warmup 1]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import Case, main

SAMPLES, GLOBAL_BATCH = 16384, 512
ROOT = Path(__file__).resolve().parent.parent


def worker(devices: int, out: Path) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import fulmen as pl

    torch.set_num_threads(1)

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(256, 512),
                torch.nn.ReLU(),
                torch.nn.Linear(512, 512),
                torch.nn.ReLU(),
                torch.nn.Linear(512, 10),
            )

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

        def on_train_start(self) -> None:
            self.trainer.strategy.barrier()
            self.began = time.perf_counter()

        def on_train_end(self) -> None:
            self.trainer.strategy.barrier()
            if self.trainer.is_global_zero:
                out.write_text(str(time.perf_counter() - self.began))

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(SAMPLES, 256, generator=g), torch.randint(0, 10, (SAMPLES,)))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(MLP(), DataLoader(data, batch_size=GLOBAL_BATCH // devices))


def job(devices: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "seconds"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--worker", str(devices), str(out)],
            env=env,
            check=True,
            timeout=300,
        )
        total = time.perf_counter() - began
        seconds = float(out.read_text())
        print(f"  {devices} process(es): training {seconds:.2f} s, whole job {total:.2f} s")
        return seconds


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    warnings.filterwarnings("ignore")
    main(
        "ddp_cpu",
        f"Training time of {SAMPLES} samples (global batch {GLOBAL_BATCH}), CPU, 1 vs 2 processes",
        [
            Case("1 process", lambda: job(1)),
            Case("2 processes (DDP, gloo)", lambda: job(2)),
        ],
        baseline="1 process",
        unit="s",
        repeats=3,
    )
