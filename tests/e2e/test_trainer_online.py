"""The specification's two lines, online: a Trainer with ``WandbLogger`` logs to a real ``fulmen
server`` process while it trains, and the server's API returns exactly the values that were logged,
the hyperparameters unflattened and the checkpoint as an artifact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_server_e2e import Server, _env, _rows, server

__all__ = ["server"]  # the fixture, imported for this module's tests
pytestmark = pytest.mark.slow

TRAIN = """
import json, sys
import torch
from torch.utils.data import DataLoader, TensorDataset
import fulmen as pl
from fulmen.loggers import WandbLogger

logged = []

class Model(pl.LightningModule):
    def __init__(self, lr=0.05, arch={"width": 8, "act": "relu"}):
        super().__init__()
        self.save_hyperparameters()
        nn = torch.nn
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        logged.append((self.global_step, loss.item()))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

torch.manual_seed(0)
x = torch.randn(64, 4)
data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
logger = WandbLogger(project="e2e", id=sys.argv[1], log_model=True)
trainer = pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                     enable_model_summary=False)
trainer.fit(Model(), data)
logger.experiment.finish()
print(json.dumps(logged))
"""


def test_trainer_with_wandb_logger_online(tmp_path: Path, server: Server) -> None:
    out = subprocess.run(
        [sys.executable, "-c", TRAIN, "spec"],
        env=_env(tmp_path, server),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    logged = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    assert len(logged) == 16  # 64 samples / 8 per batch x 2 epochs

    rows = [r for r in _rows(server, "spec") if r.get("train_loss") is not None]
    served = {int(r["trainer/global_step"]): r["train_loss"] for r in rows}
    assert served == pytest.approx(logged, abs=1e-6)  # float32 losses, exactly as logged

    run = json.loads(server.get("/entities/local/projects/e2e/runs/spec"))
    assert run["state"] == "finished"
    assert run["config"]["arch"] == {"width": 8, "act": "relu"}  # nested, not flattened
    assert run["config"]["lr"] == 0.05
    model = json.loads(server.get("/entities/local/projects/e2e/artifacts/model-spec/latest"))
    assert model["type"] == "model"
    assert "best" in model["aliases"]
