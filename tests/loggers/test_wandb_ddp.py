"""WandbLogger under DDP: two real ranks (gloo, CPU) produce exactly one run, with every metric."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fulmen import track
from tests.loggers import wandb_ddp_script
from tests.train.test_ddp import clean_env, finish, start

SCRIPT = Path(wandb_ddp_script.__file__).resolve()
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_two_ranks_make_one_run_with_every_metric(tmp_path: Path) -> None:
    env = clean_env(FULMEN_CONSOLE="off", FULMEN_STATS_INTERVAL="0", FULMEN_DISABLE_GIT="true")
    env = {k: v for k, v in env.items() if not k.startswith(("FULMEN_DIR", "WANDB_"))}
    code, output = finish(start([sys.executable, str(SCRIPT), str(tmp_path)], env, tmp_path))
    assert code == 0, output

    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["run_created"] == "Run"
    assert rank1["run_created"] != "Run"  # the do-nothing stand-in: rank 1 writes nothing
    assert rank0["global_step"] == rank1["global_step"] == 8  # 32 samples / 2 ranks / 4, x 2

    run_folders = [p for p in (tmp_path / "fulmen").iterdir() if p.name.startswith("run-")]
    assert [p.name.endswith("-ddprun") for p in run_folders] == [True]
    run = track.Api(dir=str(tmp_path)).run("ddprun")
    assert run.state == "finished"
    assert run.config["optimizer"] == {"name": "sgd", "lr": 0.1}  # nested, not flattened
    rows = run.history(pandas=False)
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    train_steps = sorted(r["trainer/global_step"] for r in rows if r.get("train_loss") is not None)
    assert train_steps == list(range(8))  # one row per optimizer step, none twice
    assert {r["rank_mean"] for r in rows if r.get("rank_mean") is not None} == {0.5}
    val = [r["val_rank_sum"] for r in rows if r.get("val_rank_sum") is not None]
    assert val == [4.0, 4.0]  # per epoch: rank 1 logs 1.0 in each of its 4 batches, rank 0 logs 0
