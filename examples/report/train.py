"""Compare two optimizers in a report: six Lightning runs (Adam and SGD, three seeds each) logged
online by ``WandbLogger`` to a local ``fulmen server``, then a report written in Python (loss
curves grouped by optimizer with min/max bands, the best validation accuracy per optimizer, a run
table, a paragraph), saved on the server and exported as one HTML file that opens anywhere.

    python examples/report/train.py [--epochs 8] [--seeds 3] [--out report.html]
                                    [--host http://127.0.0.1:8080] [--serve]

Without ``--host`` it starts a server of its own on a free port (data in a temporary folder) and
stops it at the end, unless ``--serve`` keeps it up to browse the report. Everything runs on the
CPU in seconds: the data is synthetic.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset, random_split

import fulmen as pl
import fulmen.track.reports as wr
from fulmen.loggers import WandbLogger

PROJECT = "optimizers"


class Classifier(pl.LightningModule):
    def __init__(self, optimizer: str, lr: float, seed: int, hidden: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(20, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3)
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val/loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val/acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        kind = torch.optim.Adam if self.hparams.optimizer == "adam" else torch.optim.SGD
        return kind(self.parameters(), lr=self.hparams.lr)


def data(n: int, seed: int) -> tuple[DataLoader[Any], DataLoader[Any]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    y = (x[:, :5].sum(dim=1) > 0).long() + (x[:, 5] > 1).long()
    train, val = random_split(TensorDataset(x, y), [0.8, 0.2], generator=g)
    return DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=256)


def train(optimizer: str, seed: int, epochs: int, n: int) -> None:
    pl.seed_everything(seed)
    logger = WandbLogger(project=PROJECT, name=f"{optimizer}-seed{seed}", group=optimizer)
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=logger,
        log_every_n_steps=5,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    lr = 1e-2 if optimizer == "adam" else 5e-2
    trainer.fit(Classifier(optimizer, lr, seed), *data(n, seed))
    logger.finish()  # the run ends here (else at exit): the next one starts fresh


def build_report() -> wr.Report:
    by_optimizer = "config.optimizer"
    return wr.Report(
        project=PROJECT,
        title="Adam or SGD?",
        description="Six runs of a small classifier: two optimizers, three seeds each.",
        blocks=[
            wr.H1("Training loss"),
            wr.P(
                "Each line is the mean over an optimizer's three seeds, the band spans their "
                "lowest and highest value. Adam's loss falls faster at these learning rates."
            ),
            wr.PanelGrid(
                runsets=[wr.Runset(project=PROJECT, name="all runs", groupby=by_optimizer)],
                panels=[
                    wr.LinePlot(
                        x="trainer/global_step",
                        y=["train/loss"],
                        smoothing=0.6,
                        groupby=by_optimizer,
                        groupby_rangefunc="minmax",
                        title="train/loss by optimizer",
                    ),
                    wr.LinePlot(
                        x="trainer/global_step",
                        y=["val/loss"],
                        groupby=by_optimizer,
                        groupby_rangefunc="minmax",
                        title="val/loss by optimizer",
                    ),
                    wr.BarPlot(
                        metrics=["val/acc"], agg="max", groupby=by_optimizer, title="best val/acc"
                    ),
                    wr.RunTable(
                        columns=[
                            "name",
                            "config.optimizer",
                            "config.seed",
                            "config.lr",
                            "summary.val/acc",
                            "summary.val/loss",
                        ],
                        layout=wr.Layout(w=12),
                    ),
                ],
            ),
            wr.H2("Method"),
            wr.P(
                "Cross-entropy $L = -\\sum_c y_c \\log p_c$ on 20 synthetic features, "
                "3 classes; the bar shows each run's best validation accuracy, averaged."
            ),
        ],
    )


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(port), "--data", str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/api/v1/health", timeout=1).close()
            return proc, url
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the fulmen server did not start") from None
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--out", default="report.html", help="the exported report")
    parser.add_argument("--host", default=None, help="a running server (default: start one)")
    parser.add_argument("--serve", action="store_true", help="keep the server up at the end")
    parser.add_argument("--dir", default=None, help="where the run folders go (default: temp)")
    args = parser.parse_args(argv)

    work = Path(args.dir or tempfile.mkdtemp(prefix="fulmen-report-example-"))
    server, url = (None, args.host) if args.host else start_server(work / "server")
    os.environ.update(FULMEN_BASE_URL=url, FULMEN_MODE="online", FULMEN_DIR=str(work / "runs"))
    try:
        for optimizer in ("adam", "sgd"):
            for seed in range(args.seeds):
                train(optimizer, seed, args.epochs, args.samples)
        report = build_report()
        page = report.save()
        print(f"report: {page}")
        subprocess.run(
            [sys.executable, "-m", "fulmen", "report", "export", page, "--out", args.out],
            check=True,
        )
        if args.serve and server is not None:
            print("serving; Ctrl-C to stop")
            server.wait()
        return {"url": page, "html": args.out}
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
