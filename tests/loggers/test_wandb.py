"""WandbLogger on real runs: the real tracker writes run folders, read back with ``track.Api``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.loggers import CSVLogger, Logger, WandbLogger
from fulmen.track import Api
from tests.loggers.conftest import QUIET


def data(n: int = 32) -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


class Model(pl.LightningModule):
    def __init__(self, lr: float = 0.05, arch: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def trainer(logger: Any, **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "max_epochs": 2,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **kwargs,
    }
    return pl.Trainer(logger=logger, **options)


def test_defaults_name_version_save_dir(tmp_path: Path) -> None:
    logger = WandbLogger()
    assert isinstance(logger, Logger)
    assert logger.name == "lightning_logs"
    assert logger.save_dir == "."
    run = logger.experiment
    assert logger.version == run.id
    assert run.project == "lightning_logs"
    assert logger.log_dir == os.path.join(".", "lightning_logs", run.id)
    assert (tmp_path / "fulmen").is_dir()


def test_project_precedence_and_synonyms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    assert WandbLogger().name == "from-env"
    assert WandbLogger(project="given").name == "given"
    logger = WandbLogger(version="abc123", save_dir=tmp_path / "runs", name="nice")
    assert logger.version == "abc123"
    run = logger.experiment
    assert (run.id, run.name, run.project) == ("abc123", "nice", "from-env")
    assert str(run.run_dir).startswith(str(tmp_path / "runs" / "fulmen"))
    run.finish()
    # dir is honoured even with save_dir given; the id resumes ("allow")
    again = WandbLogger(id="abc123", save_dir="elsewhere", dir=tmp_path / "runs")
    assert again.experiment.resumed
    with pytest.raises(ValueError, match="same setting"):
        WandbLogger(id="a", version="b")
    with pytest.raises(ValueError, match="log_model"):
        WandbLogger(log_model="best")


def test_metrics_hparams_step_metric_and_prefix(tmp_path: Path) -> None:
    logger = WandbLogger(prefix="tmp", tags=["t1"], group="g")
    trainer(logger).fit(Model(arch={"layers": [4, 1], "act": torch.nn.Tanh}), data(), data(8))
    run = Api().run(logger.version)
    assert (run.tags, run.group) == (["t1"], "g")
    assert run.config["lr"] == 0.05
    assert run.config["arch"] == {"layers": [4, 1], "act": str(torch.nn.Tanh)}  # not flattened
    rows = run.history(keys=["tmp-loss"], pandas=False)
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert len(rows) == 8
    full = [r for r in run.scan_history() if "tmp-loss" in r]
    assert [r["trainer/global_step"] for r in full] == list(range(8))
    assert all(r["tmp-epoch"] in (0, 1) for r in full)
    val = [r for r in run.scan_history() if "tmp-val_loss" in r]
    assert [r["trainer/global_step"] for r in val] == [4, 8]
    declared = {m["name"]: m["step_metric"] for m in run.metrics}
    assert declared == {"trainer/global_step": None, "*": "trainer/global_step"}


def test_sync_step_false_declares_no_step_metric() -> None:
    logger = WandbLogger(sync_step=False)
    logger.log_metrics({"a": 1.0}, step=3)
    run = Api().run(logger.version)
    assert run.metrics == []


def test_watch_histograms_at_the_right_steps() -> None:
    logger = WandbLogger()
    model = Model()
    logger.watch(model, log="all", log_freq=3)
    trainer(logger, max_epochs=1, limit_val_batches=0).fit(model, data(48))
    rows = list(Api().run(logger.version).scan_history())
    with_grads = [r["trainer/global_step"] for r in rows if "gradients/net.weight" in r]
    assert with_grads == [2, 5]  # after the 3rd and 6th backward pass
    assert all("parameters/net.bias" in r for r in rows if "gradients/net.weight" in r)


def test_fit_then_test_log_into_one_run_and_the_run_ends_finished() -> None:
    logger = WandbLogger()
    t = trainer(logger, max_epochs=1)
    model = Model()
    t.fit(model, data(), data(8))
    assert logger.experiment.state == "running"
    t.test(model, data(8))
    run = Api().run(logger.version)
    assert any("test_loss" in r for r in run.scan_history())
    assert any("loss" in r for r in run.scan_history())
    assert len(Api().runs()) == 1
    logger.finish()
    assert Api().run(logger.version).state == "finished"


def test_a_failed_fit_marks_the_run_failed() -> None:
    class Broken(Model):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == 2:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    logger = WandbLogger()
    with pytest.raises(RuntimeError, match="boom"):
        trainer(logger).fit(Broken(), data())
    assert Api().run(logger.version).state == "failed"


def test_checkpoints_under_save_dir_project_version(tmp_path: Path) -> None:
    logger = WandbLogger(project="proj", save_dir=tmp_path / "out")
    t = trainer(logger, max_epochs=1)
    t.fit(Model(), data())
    folder = tmp_path / "out" / "proj" / str(logger.version) / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["epoch=0-step=4.ckpt"]
    assert Api(dir=str(tmp_path / "out")).run(logger.version).artifacts == []  # log_model=False


def model_versions(logger: WandbLogger) -> list[dict[str, Any]]:
    folder = Path(logger.save_dir) / "fulmen" / "artifacts" / f"model-{logger.version}"
    api = Api(dir=logger.save_dir)
    found = []
    for path in sorted(folder.glob("v*.json"), key=lambda p: int(p.stem[1:])):
        artifact = api.artifact(f"model-{logger.version}:{path.stem}")
        found.append({"aliases": artifact.aliases, **artifact.metadata})
    return found


def fit_with_checkpoints(log_model: Any, **ckpt: Any) -> WandbLogger:
    logger = WandbLogger(log_model=log_model)
    callback = pl.callbacks.ModelCheckpoint(monitor="val_loss", **ckpt)
    t = trainer(logger, max_epochs=3, callbacks=[callback])
    t.fit(Model(lr=0.01), data(), data(8))
    return logger


def test_log_model_true_uploads_at_the_end() -> None:
    logger = fit_with_checkpoints(True, save_top_k=2)
    versions = model_versions(logger)
    assert len(versions) == 2
    assert versions[-1]["aliases"] == ["best", "latest"] or "best" in str(versions)
    meta = versions[0]
    assert meta["ModelCheckpoint"]["monitor"] == "val_loss"
    assert meta["ModelCheckpoint"]["save_top_k"] == 2
    assert meta["original_filename"].startswith("epoch=")
    assert isinstance(meta["score"], float)
    artifact = Api().artifact(f"model-{logger.version}:best")
    assert list(artifact.entries) == ["model.ckpt"]
    assert artifact.type == "model"


def test_log_model_all_uploads_every_checkpoint_once() -> None:
    logger = fit_with_checkpoints("all", save_top_k=-1)
    versions = model_versions(logger)
    assert [v["original_filename"] for v in versions] == [
        "epoch=0-step=4.ckpt",
        "epoch=1-step=8.ckpt",
        "epoch=2-step=12.ckpt",
    ]
    assert "latest" in versions[-1]["aliases"]
    assert sum("best" in v["aliases"] for v in versions) == 1
    objects = list((Path("fulmen") / "artifacts" / "objects").rglob("*"))
    assert len([p for p in objects if p.is_file()]) == 3  # identical bytes are stored once


def test_log_model_best_and_last_keeps_exactly_two() -> None:
    class Worsening(Model):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", float(self.current_epoch == 1) - self.current_epoch * 0.01)

    logger = WandbLogger(log_model="best_and_last")
    callback = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=-1)
    trainer(logger, max_epochs=3, callbacks=[callback]).fit(Worsening(), data(), data(8))
    versions = model_versions(logger)
    # epoch 0: 0.0, epoch 1: 0.99, epoch 2: -0.02 (best and last)
    assert [(v["original_filename"], v["aliases"]) for v in versions] == [
        ("epoch=2-step=12.ckpt", ["best", "latest"])
    ]
    logger2 = WandbLogger(log_model="best_and_last", checkpoint_name="ckpt")
    logger.finish()

    class Improving(Model):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", float(self.current_epoch != 0))

    callback = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=-1)
    trainer(logger2, max_epochs=3, callbacks=[callback]).fit(Improving(), data(), data(8))
    api = Api()
    assert api.artifact("ckpt:best").metadata["original_filename"] == "epoch=0-step=4.ckpt"
    assert api.artifact("ckpt:latest").metadata["original_filename"] == "epoch=2-step=12.ckpt"
    assert len(list((Path("fulmen") / "artifacts" / "ckpt").glob("v*.json"))) == 2


def test_offline_with_log_model_keeps_artifacts_in_the_run_folder() -> None:
    logger = WandbLogger(offline=True, log_model=True)
    trainer(logger, max_epochs=1).fit(Model(), data())
    run = Api().run(logger.version)
    assert logger.experiment.mode == "offline"
    assert [a["name"] for a in run.artifacts] == [f"model-{logger.version}"]
    staged = Path(logger.experiment.dir) / "artifacts" / f"model-{logger.version}-v0.json"
    assert staged.is_file()


def test_other_ranks_create_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_PROCID", "1")
    logger = WandbLogger(log_model="all")
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    assert not (tmp_path / "fulmen").exists()
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv("LOCAL_RANK", "2")
    WandbLogger().log_metrics({"x": 1.0}, step=0)
    assert not (tmp_path / "fulmen").exists()


def test_an_active_run_or_a_given_experiment_is_reused() -> None:
    from fulmen import track

    run = track.init(project="mine")
    with pytest.warns(UserWarning, match="already active"):
        assert WandbLogger().experiment is run
    given = WandbLogger(experiment=run)
    given.log_metrics({"a": 1.0}, step=0)
    assert given.version == run.id


def test_several_loggers_at_once(tmp_path: Path) -> None:
    wandb_logger, csv_logger = WandbLogger(), CSVLogger(tmp_path / "csv")
    trainer([wandb_logger, csv_logger], max_epochs=1).fit(Model(), data())
    assert (tmp_path / "csv" / "lightning_logs" / "version_0" / "metrics.csv").is_file()
    assert sum("loss" in r for r in Api().run(wandb_logger.version).scan_history()) == 4
    # the first logger decides the checkpoint folder
    assert (tmp_path / "lightning_logs" / str(wandb_logger.version) / "checkpoints").is_dir()


CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
import fulmen as pl
from fulmen.loggers import WandbLogger
from tests.loggers.test_wandb import Model, data

class Crashing(Model):
    def training_step(self, batch, batch_idx):
        if {crash} and self.current_epoch == 1 and batch_idx == 2:
            import os
            os._exit(3)  # a hard crash: no finalize, no atexit
        self.log("ep", float(self.current_epoch), on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)

logger = WandbLogger()
callback = pl.callbacks.ModelCheckpoint(save_last=True)
trainer = pl.Trainer(logger=logger, max_epochs=2, log_every_n_steps=1, callbacks=[callback],
                     enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Crashing(), data(), ckpt_path={ckpt!r})
print("ID", logger.version)
"""


def child(tmp_path: Path, crash: bool, ckpt: str | None) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parents[2])
    code = textwrap.dedent(CHILD).format(root=root, crash=crash, ckpt=ckpt)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(QUIET)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_resume_from_a_checkpoint_in_a_new_process_continues_the_run(tmp_path: Path) -> None:
    first = child(tmp_path, crash=True, ckpt=None)
    assert first.returncode == 3, first.stderr
    (run,) = Api().runs()
    assert run.state == "crashed"
    ckpt = tmp_path / "lightning_logs" / run.id / "checkpoints" / "last.ckpt"
    second = child(tmp_path, crash=False, ckpt=str(ckpt))
    assert second.returncode == 0, second.stderr
    assert f"ID {run.id}" in second.stdout
    (resumed,) = Api().runs()
    assert resumed.state == "finished"
    steps = [r["trainer/global_step"] for r in resumed.scan_history() if "loss" in r]
    assert steps == list(range(8))  # the crashed attempt's rows after the checkpoint superseded
    # ... but not the epoch-end row it logged just after writing the checkpoint
    epochs = [(r["trainer/global_step"], r["ep"]) for r in resumed.scan_history() if "ep" in r]
    assert epochs == [(4, 0.0), (8, 1.0)]


def test_ctrl_c_marks_the_run_killed() -> None:
    class Interrupted(Model):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == 1:
                raise KeyboardInterrupt
            return super().training_step(batch, batch_idx)

    logger = WandbLogger()
    with pytest.raises(SystemExit):
        trainer(logger).fit(Interrupted(), data())
    assert Api().run(logger.version).state == "killed"


def test_directory_setting_anonymous_tables_and_artifact_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FULMEN_DIR", str(tmp_path / "tracked"))
    logger = WandbLogger(anonymous=True, log_model="all")
    assert logger.save_dir == str(tmp_path / "tracked")
    run = logger.experiment
    assert str(run.run_dir).startswith(str(tmp_path / "tracked"))
    logger.log_table("preds", columns=["x", "y"], data=[[1, "a"]], step=0)
    logger.log_text("notes", columns=["t"], data=[["hello"]], step=1)
    (tmp_path / "w.bin").write_bytes(b"weights")
    run.log_artifact(str(tmp_path / "w.bin"), name="weights", type="model")
    assert logger.use_artifact("weights:latest", artifact_type="model").version == "v0"
    folder = WandbLogger.download_artifact("weights:v0", save_dir=tmp_path / "dl")
    assert (Path(folder) / "w.bin").read_bytes() == b"weights"
    logger.finish()
    api_run = Api().run(logger.version)
    rows = list(api_run.scan_history())
    assert rows[0]["preds"]["_type"] == "table-file"
    table = json.loads(api_run.file(rows[0]["preds"]["path"]).read())
    assert table == {"columns": ["x", "y"], "data": [[1, "a"]]}
    notes = json.loads(api_run.file(rows[1]["notes"]["path"]).read())
    assert notes["data"] == [["hello"]]
