"""LightningCLI (jsonargparse): subcommands, YAML configs, --print_config, run=False, defaults,
the saved config, seeds and subclass hooks; plus the examples/cli app run to completion."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import fulmen as pl
from fulmen.lightning_cli import (
    LightningArgumentParser,
    LightningCLI,
    SaveConfigCallback,
    cli_lightning_logo,
)
from tests.train.helpers import Regressor, regression_data

ROOT = Path(__file__).resolve().parents[2]


class Data(pl.LightningDataModule):
    def __init__(self, batch_size: int = 8, samples: int = 32) -> None:
        super().__init__()
        self.batch_size, self.samples = batch_size, samples

    def train_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(regression_data(self.samples), self.batch_size)

    def val_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(regression_data(16, seed=1), self.batch_size)

    def test_dataloader(self) -> Any:
        return self.val_dataloader()

    def predict_dataloader(self) -> Any:
        return self.val_dataloader()


def quiet(tmp_path: Path) -> list[str]:
    return [
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.max_epochs=1",
    ]


def test_fit_subcommand_trains_and_saves_the_config(tmp_path: Path) -> None:
    cli = LightningCLI(
        Regressor, Data, args=["fit", *quiet(tmp_path), "--model.lr=0.05", "--data.batch_size=4"]
    )
    assert cli.subcommand == "fit"
    assert isinstance(cli.model, Regressor)
    assert cli.model.hparams.lr == 0.05
    assert cli.datamodule.batch_size == 4
    assert cli.trainer.global_step == 8  # 32 samples / 4, one epoch: fit ran
    saved = Path(cli.trainer.log_dir) / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    assert config["model"]["lr"] == 0.05
    assert config["data"]["batch_size"] == 4
    assert config["trainer"]["max_epochs"] == 1


def test_validate_test_and_predict_subcommands_run_with_ckpt_path(tmp_path: Path) -> None:
    fit = LightningCLI(Regressor, Data, args=["fit", *quiet(tmp_path)])
    ckpt = tmp_path / "model.ckpt"
    fit.trainer.save_checkpoint(ckpt)
    for subcommand in ("validate", "test", "predict"):
        cli = LightningCLI(
            Regressor,
            Data,
            args=[subcommand, *quiet(tmp_path), f"--ckpt_path={ckpt}"],
            save_config_kwargs={"overwrite": True},
        )
        assert cli.trainer.ckpt_path == str(ckpt)
    assert "test_loss" in cli.trainer.logged_metrics or subcommand == "predict"


def test_a_yaml_config_sets_every_part_and_the_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "trainer:\n  max_epochs: 2\n  limit_train_batches: 2\n"
        f"  default_root_dir: {tmp_path}\n  enable_progress_bar: false\n"
        "model:\n  lr: 0.01\ndata:\n  batch_size: 2\n"
    )
    cli = LightningCLI(Regressor, Data, args=["fit", "--config", str(config), "--model.lr=0.02"])
    assert cli.trainer.max_epochs == 2
    assert cli.trainer.global_step == 4
    assert cli.model.hparams.lr == 0.02
    assert cli.datamodule.batch_size == 2


def test_print_config_prints_the_resolved_config_and_exits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        LightningCLI(Regressor, Data, args=["fit", "--model.lr=0.3", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["lr"] == 0.3
    assert printed["trainer"]["max_epochs"] is None
    assert "seed_everything" in printed


def test_run_false_parses_without_a_subcommand_and_runs_nothing(tmp_path: Path) -> None:
    cli = LightningCLI(
        Regressor,
        Data,
        run=False,
        args=quiet(tmp_path),
        trainer_defaults={"max_epochs": 7, "limit_train_batches": 1},
    )
    assert cli.subcommand is None
    assert cli.trainer.global_step == 0
    assert cli.trainer.limit_train_batches == 1
    assert cli.trainer.max_epochs == 1  # the command line over trainer_defaults
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 1


def test_trainer_defaults_apply_when_the_config_is_silent(tmp_path: Path) -> None:
    cli = LightningCLI(
        Regressor,
        Data,
        run=False,
        args=[f"--trainer.default_root_dir={tmp_path}"],
        trainer_defaults={"max_epochs": 7, "callbacks": [pl.callbacks.EarlyStopping("val_loss")]},
    )
    assert cli.trainer.max_epochs == 7
    assert any(isinstance(cb, pl.callbacks.EarlyStopping) for cb in cli.trainer.callbacks)
    assert any(isinstance(cb, SaveConfigCallback) for cb in cli.trainer.callbacks)


def test_seed_everything_default_seeds_and_is_recorded(tmp_path: Path) -> None:
    first = LightningCLI(
        Regressor, Data, run=False, args=quiet(tmp_path), seed_everything_default=3
    )
    weights = first.model.net[0].weight.detach().clone()
    again = LightningCLI(
        Regressor, Data, run=False, args=quiet(tmp_path), seed_everything_default=3
    )
    assert torch.equal(weights, again.model.net[0].weight)
    assert first.config["seed_everything"] == 3
    chosen = LightningCLI(Regressor, Data, run=False, args=quiet(tmp_path))
    assert isinstance(chosen.config["seed_everything"], int)  # True: a random seed, written down


def test_save_config_refuses_to_overwrite_unless_told(tmp_path: Path) -> None:
    args = ["fit", *quiet(tmp_path), "--trainer.logger=false"]
    LightningCLI(Regressor, Data, args=args)
    with pytest.raises(RuntimeError, match=r"expected .*config\.yaml to NOT exist"):
        LightningCLI(Regressor, Data, args=args)
    LightningCLI(Regressor, Data, args=args, save_config_kwargs={"overwrite": True})
    LightningCLI(Regressor, Data, args=args, save_config_callback=None)
    assert (tmp_path / "config.yaml").is_file()


def test_subclass_hooks_link_arguments_and_add_lightning_class_args(tmp_path: Path) -> None:
    class Linked(Regressor):
        def __init__(self, lr: float = 0.1, batch_size: int = 1) -> None:
            super().__init__(lr=lr)
            self.batch_size = batch_size

    class MyCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.link_arguments("data.batch_size", "model.batch_size")
            parser.add_lightning_class_args(pl.callbacks.EarlyStopping, "early_stopping")
            parser.set_defaults(
                {"early_stopping.monitor": "val_loss", "early_stopping.patience": 2}
            )

    cli = MyCLI(Linked, Data, run=False, args=[*quiet(tmp_path), "--data.batch_size=16"])
    assert cli.model.batch_size == 16
    stopping = [cb for cb in cli.trainer.callbacks if isinstance(cb, pl.callbacks.EarlyStopping)]
    assert len(stopping) == 1
    assert stopping[0].patience == 2
    with pytest.raises(ValueError, match="Cannot add arguments from"):
        LightningArgumentParser().add_lightning_class_args(dict, "x")


def test_optimizer_from_the_command_line_replaces_configure_optimizers(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="configure_optimizers` will be overridden"):
        cli = LightningCLI(
            Regressor,
            Data,
            args=["fit", *quiet(tmp_path), "--optimizer=Adam", "--optimizer.lr=0.003"],
        )
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == 0.003
    with pytest.warns(UserWarning, match="will be overridden"):
        scheduled = LightningCLI(
            Regressor,
            Data,
            args=[
                "fit",
                *quiet(tmp_path),
                "--optimizer=SGD",
                "--optimizer.lr=0.1",
                "--lr_scheduler=StepLR",
                "--lr_scheduler.step_size=1",
                "--lr_scheduler.gamma=0.5",
            ],
            save_config_kwargs={"overwrite": True},
        )
    (config,) = scheduled.trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.StepLR)
    assert scheduled.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05)  # 1 epoch


def test_lightning_cli_resolves_where_lightning_users_import_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fulmen.cli import LightningCLI as from_cli
    from fulmen.cli import cli as click_group

    assert from_cli is LightningCLI
    assert pl.cli.LightningCLI is LightningCLI
    assert click_group.name == "cli"  # the fulmen command is still there
    cli_lightning_logo()
    assert "fulmen" in capsys.readouterr().out


def test_the_cli_example_fits_tests_and_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("cli_app", ROOT / "examples" / "cli" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.chdir(tmp_path)  # the config's default_root_dir is relative
    config = str(ROOT / "examples" / "cli" / "config.yaml")
    small = ["--config", config, "--trainer.max_epochs=2", "--data.samples=128"]
    fit = app.main(["fit", *small])
    assert fit.trainer.current_epoch == 2
    best = fit.trainer.checkpoint_callback.best_model_path
    assert os.path.isfile(best)
    test = app.main(["test", *small, "--ckpt_path", best])
    assert test.trainer.logged_metrics["test_acc"] > 0.5
    predict = app.main(["predict", *small, "--ckpt_path", best])
    assert predict.trainer.ckpt_path == best
    assert predict.trainer.num_predict_batches == [1]  # 32 samples, batch 32: it predicted
    script = app.main(small, run=False)  # run=False: the script drives the trainer
    predictions = script.trainer.predict(script.model, datamodule=script.datamodule, ckpt_path=best)
    assert sum(len(p) for p in predictions) == 32
    capsys.readouterr()


def test_callbacks_from_the_config_by_class_path(tmp_path: Path) -> None:
    # the callback modules keep their signatures readable by jsonargparse
    config = tmp_path / "config.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n"
        "    - class_path: fulmen.callbacks.ModelCheckpoint\n"
        "      init_args: {monitor: val_loss, save_on_exception: true}\n"
        "    - class_path: fulmen.callbacks.LearningRateMonitor\n"
        "      init_args: {log_key_prefix: opt/}\n"
    )
    cli = LightningCLI(Regressor, Data, run=False, args=[*quiet(tmp_path), "--config", str(config)])
    kinds = {type(cb).__name__: cb for cb in cli.trainer.callbacks}
    assert kinds["ModelCheckpoint"].save_on_exception is True
    assert kinds["ModelCheckpoint"].monitor == "val_loss"
    assert kinds["LearningRateMonitor"].log_key_prefix == "opt/"
