"""GPU check for a lent GPU machine: fulmen's Trainer against a plain PyTorch loop on CUDA.

    python scripts/gpu_check.py [--steps 60] [--warmup 15] [--json PATH]

On one GPU it trains the same MLP (1024-4096-4096-1024, batch 256, SGD) with a plain PyTorch loop
and with the Trainer, in "32-true", "16-mixed" (autocast + GradScaler) and "bf16-mixed", and
prints each Trainer step time as a ratio to the plain loop's at the same precision. With two or
more GPUs it also runs DDP over NCCL (``strategy="ddp"``, fulmen launching one process per GPU,
bf16-mixed, the same per-GPU batch), checks that every rank ends with the same weights, and prints
the per-step time and the throughput ratio against one GPU. Exit status 0 when every check passed;
without a CUDA device it says so and exits 0 (nothing to check).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

BATCH, WIDTH = 256, 1024


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(WIDTH, 4 * WIDTH),
        torch.nn.GELU(),
        torch.nn.Linear(4 * WIDTH, 4 * WIDTH),
        torch.nn.GELU(),
        torch.nn.Linear(4 * WIDTH, WIDTH),
    )


def data(steps: int) -> Any:
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(steps * BATCH, WIDTH, generator=g)
    return DataLoader(TensorDataset(x, x.flip(1)), batch_size=BATCH, pin_memory=True)


def plain(precision: str, steps: int, warmup: int) -> tuple[float, float]:
    """Seconds per step after ``warmup`` steps, and the last loss."""
    device = torch.device("cuda", 0)
    model = mlp().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "16-mixed")
    began = 0.0
    loss = torch.zeros(())
    for i, (cpu_x, cpu_y) in enumerate(data(steps + warmup)):
        if i == warmup:
            torch.cuda.synchronize()
            began = time.perf_counter()
        x, y = cpu_x.to(device, non_blocking=True), cpu_y.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    torch.cuda.synchronize()
    return (time.perf_counter() - began) / steps, float(loss.detach())


def trainer_run(
    precision: str, steps: int, warmup: int, devices: int = 1
) -> tuple[float, float, Any]:
    import fulmen as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()
            self.began = 0.0
            self.seconds = 0.0
            self.last = 0.0

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == warmup:
                torch.cuda.synchronize()
                self.began = time.perf_counter()
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("loss", loss)
            return loss

        def on_train_end(self) -> None:
            torch.cuda.synchronize()
            self.seconds = (time.perf_counter() - self.began) / steps
            self.last = float(self.trainer.callback_metrics["loss"])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    module = Module()
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=devices,
        precision=precision,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    # per-GPU batch BATCH: under DDP each rank gets its share of (devices x steps) batches
    trainer.fit(module, data((steps + warmup) * devices))
    return module.seconds, module.last, trainer


def ddp_worker(out: Path, steps: int, warmup: int) -> None:
    seconds, loss, trainer = trainer_run("bf16-mixed", steps, warmup, torch.cuda.device_count())
    module = trainer.lightning_module
    checksum = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum()
    sums = trainer.strategy.all_gather(checksum.to(trainer.strategy.root_device))
    if trainer.is_global_zero:
        same = bool(torch.allclose(sums, sums[0].expand_as(sums)))
        out.write_text(json.dumps({"seconds": seconds, "loss": loss, "same_weights": same}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--ddp-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available here; nothing to check (run it on a GPU).")
        return 0
    if args.ddp_worker is not None:
        ddp_worker(args.ddp_worker, args.steps, args.warmup)
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    print(
        f"gpu_check: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, "
        f"torch {torch.__version__}, batch {BATCH}, {args.steps} timed steps"
    )
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "rows": []}
    ok = True
    print(f"{'precision':<12} {'plain ms':>9} {'fulmen ms':>10} {'ratio':>7}  last losses")
    for precision in ("32-true", "16-mixed", "bf16-mixed"):
        plain_s, plain_loss = plain(precision, args.steps, args.warmup)
        ours_s, ours_loss, _ = trainer_run(precision, args.steps, args.warmup)
        plain_s2, _ = plain(precision, args.steps, args.warmup)  # again: the GPU warms up
        plain_s = min(plain_s, plain_s2)
        ratio = ours_s / plain_s
        finite = bool(torch.isfinite(torch.tensor([plain_loss, ours_loss])).all())
        ok &= finite
        print(
            f"{precision:<12} {plain_s * 1e3:>9.3f} {ours_s * 1e3:>10.3f} {ratio:>6.3f}x  "
            f"{plain_loss:.4g} / {ours_loss:.4g}{'' if finite else '  NOT FINITE'}"
        )
        report["rows"].append(
            {
                "precision": precision,
                "plain_s": plain_s,
                "fulmen_s": ours_s,
                "ratio": ratio,
                "losses": [plain_loss, ours_loss],
            }
        )
    gpus = torch.cuda.device_count()
    if gpus >= 2:
        single_s = next(r["fulmen_s"] for r in report["rows"] if r["precision"] == "bf16-mixed")
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "ddp.json"
            command = [
                sys.executable,
                __file__,
                "--ddp-worker",
                str(out),
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
            ]
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            done = subprocess.run(command, env=env, timeout=600, check=False)
            if done.returncode != 0 or not out.exists():
                print(f"DDP (NCCL, {gpus} GPUs): FAILED with exit code {done.returncode}")
                return 1
            ddp = json.loads(out.read_text())
        speedup = gpus * single_s / ddp["seconds"]
        print(
            f"DDP (NCCL, {gpus} GPUs, bf16-mixed): {ddp['seconds'] * 1e3:.3f} ms/step, "
            f"throughput {speedup:.2f}x one GPU (ideal {gpus}x), same weights on every rank: "
            f"{ddp['same_weights']}"
        )
        ok &= bool(ddp["same_weights"])
        report["ddp"] = {**ddp, "gpus": gpus, "throughput_vs_one_gpu": speedup}
    else:
        print("DDP: only one GPU here; the NCCL check needs two or more")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print("gpu_check:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
