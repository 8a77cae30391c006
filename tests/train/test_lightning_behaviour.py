"""Public behaviour that matches Lightning's (issue 19, "Behaviour that differs on public API")."""

from __future__ import annotations

import csv
import os
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import fulmen as pl
from fulmen.callbacks import ModelCheckpoint, Timer
from fulmen.loggers import CSVLogger
from fulmen.trainer.states import RunningStage, TrainerFn, TrainerState, TrainerStatus
from fulmen.utilities import MisconfigurationException, PossibleUserWarning
from fulmen.utilities.exceptions import MisconfigurationException as FromExceptions
from fulmen.utilities.warnings import PossibleUserWarning as FromWarnings
from tests.train.helpers import Regressor, loader, quiet_trainer, weights

# ---------------------------------------------------------------- 1. trainer.state


class StateRecorder(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, Any, Any]] = []
        self.stages: list[str] = []

    def _record(self, hook: str, trainer: Any) -> None:
        state = trainer.state
        self.seen.append((hook, state.fn, state.stage, state.status))

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.stages.append(stage)

    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self._record("sanity", trainer)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        self._record("train_batch", trainer)

    def on_validation_batch_start(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self._record("val_batch", trainer)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._record("test", trainer)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._record("predict", trainer)


def test_trainer_state_has_lightning_fn_stage_status_and_finished() -> None:
    recorder = StateRecorder()
    trainer = quiet_trainer(callbacks=[recorder], num_sanity_val_steps=1, limit_train_batches=1)
    assert isinstance(trainer.state, TrainerState)
    assert trainer.state.status == TrainerStatus.INITIALIZING
    assert not trainer.state.finished
    model = Regressor()
    trainer.fit(model, loader(), loader(n=8))
    trainer.test(model, loader(n=8), verbose=False)
    trainer.predict(model, loader(n=8))
    running = TrainerStatus.RUNNING
    assert recorder.seen == [
        ("sanity", TrainerFn.FITTING, RunningStage.SANITY_CHECKING, running),
        ("val_batch", TrainerFn.FITTING, RunningStage.SANITY_CHECKING, running),
        ("train_batch", TrainerFn.FITTING, RunningStage.TRAINING, running),
        ("val_batch", TrainerFn.FITTING, RunningStage.VALIDATING, running),
        ("test", TrainerFn.TESTING, RunningStage.TESTING, running),
        ("predict", TrainerFn.PREDICTING, RunningStage.PREDICTING, running),
    ]
    assert trainer.state.finished
    assert trainer.state.status == "finished"
    assert trainer.state.fn == TrainerFn.PREDICTING
    assert trainer.state.stage is None


def test_trainer_state_enums_carry_lightnings_values() -> None:
    assert [f.value for f in TrainerFn] == ["fit", "validate", "test", "predict"]
    assert [s.value for s in RunningStage] == [
        "train",
        "sanity_check",
        "validate",
        "test",
        "predict",
    ]
    assert [s.value for s in TrainerStatus] == [
        "initializing",
        "running",
        "finished",
        "interrupted",
    ]
    assert TrainerFn.FITTING == "FIT"
    assert TrainerFn("fit") is TrainerFn.FITTING
    assert pl.trainer.states.TrainerFn is TrainerFn


def test_a_failed_fit_leaves_the_status_interrupted() -> None:
    class Boom(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            raise RuntimeError("boom")

    trainer = quiet_trainer()
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Boom(), loader())
    assert trainer.state.status == TrainerStatus.INTERRUPTED
    assert trainer.interrupted
    assert not trainer.state.finished


def test_setup_and_teardown_get_the_stage_by_keyword() -> None:
    got: list[tuple[str, dict[str, Any]]] = []

    class KeywordOnly(Regressor):
        def setup(self, **kwargs: Any) -> None:  # would fail if the stage came by position
            got.append(("setup", kwargs))

        def teardown(self, **kwargs: Any) -> None:
            got.append(("teardown", kwargs))

    class Data(pl.LightningDataModule):
        def setup(self, **kwargs: Any) -> None:
            got.append(("dm.setup", kwargs))

        def train_dataloader(self) -> Any:
            return loader()

    trainer = quiet_trainer()
    trainer.fit(KeywordOnly(), datamodule=Data())
    assert got == [
        ("dm.setup", {"stage": "fit"}),
        ("setup", {"stage": "fit"}),
        ("teardown", {"stage": "fit"}),
    ]
    recorder = StateRecorder()
    quiet_trainer(callbacks=[recorder]).validate(Regressor(), loader(n=8), verbose=False)
    assert recorder.stages == ["validate"]


# ---------------------------------------------------------------- 2. hooks on the instance


def test_hooks_set_on_the_instance_are_honoured() -> None:
    calls: list[str] = []
    model = Regressor()
    model.validation_step = None  # type: ignore[assignment,method-assign]  # turns validation off
    model.on_train_start = lambda: calls.append("module.on_train_start")  # type: ignore[method-assign]
    callback = pl.Callback()
    callback.on_train_end = lambda trainer, module: calls.append("cb.on_train_end")  # type: ignore[method-assign]
    trainer = quiet_trainer(callbacks=[callback])
    trainer.fit(model, loader(), loader(n=8))
    assert calls == ["module.on_train_start", "cb.on_train_end"]
    assert trainer.num_val_batches == [0.0]  # no validation_step: no validation loop
    assert "val_loss" not in trainer.callback_metrics


def test_configure_callbacks_runs_before_prepare_data() -> None:
    order: list[str] = []

    class Ordered(Regressor):
        def configure_callbacks(self) -> Any:
            order.append("configure_callbacks")
            return []

        def prepare_data(self) -> None:
            order.append("prepare_data")

    quiet_trainer().fit(Ordered(), loader())
    assert order == ["configure_callbacks", "prepare_data"]


def test_steps_without_batch_idx_work() -> None:
    class NoIndex(Regressor):
        def training_step(self, batch: Any) -> torch.Tensor:  # type: ignore[override]
            return super().training_step(batch, 0)

        def validation_step(self, batch: Any) -> None:  # type: ignore[override]
            super().validation_step(batch, 0)

        def predict_step(self, batch: Any) -> torch.Tensor:  # type: ignore[override]
            return self(batch[0])

    trainer = quiet_trainer()
    model = NoIndex()
    trainer.fit(model, loader(), loader(n=8))
    assert trainer.global_step == 8
    assert "val_loss" in trainer.callback_metrics
    assert len(trainer.predict(model, loader(n=8))) == 1


# ---------------------------------------------------------------- 3. logged_metrics


class ListLogger(CSVLogger):
    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self.rows: list[dict[str, float]] = []

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        self.rows.append(dict(metrics))


def test_logged_metrics_hold_what_was_logged_without_epoch(tmp_path: Path) -> None:
    logger = ListLogger(str(tmp_path))
    trainer = quiet_trainer(logger=logger, log_every_n_steps=1)
    trainer.fit(Regressor(), loader(), loader(n=8))
    assert set(trainer.logged_metrics) == {"train_loss", "val_loss"}
    assert all("epoch" in row for row in logger.rows)  # the loggers still get it


# ---------------------------------------------------------------- 4. argument validation


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"max_epochs": -2},
            MisconfigurationException,
            "`max_epochs` must be a non-negative integer or -1. You passed in -2.",
        ),
        (
            {"max_steps": -5},
            MisconfigurationException,
            "`max_steps` must be a non-negative integer or -1. You passed in -5.",
        ),
        (
            {"check_val_every_n_epoch": 1.5},
            MisconfigurationException,
            "`check_val_every_n_epoch` should be an integer, found 1.5.",
        ),
        (
            {"gradient_clip_val": "1.0"},
            TypeError,
            "`gradient_clip_val` should be an int or a float. Got 1.0.",
        ),
        (
            {"gradient_clip_algorithm": "l2"},
            MisconfigurationException,
            "`gradient_clip_algorithm` l2 is invalid. Allowed algorithms: ['value', 'norm'].",
        ),
    ],
)
def test_trainer_rejects_arguments_lightning_rejects_with_its_message(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        pl.Trainer(logger=False, **kwargs)
    assert str(info.value) == message


def test_negative_model_checkpoint_every_n_epochs_is_rejected() -> None:
    with pytest.raises(MisconfigurationException, match=r"every_n_epochs=-1. Must be >= 0"):
        ModelCheckpoint(every_n_epochs=-1)
    with pytest.raises(MisconfigurationException, match=r"every_n_train_steps=-3. Must be >= 0"):
        ModelCheckpoint(every_n_train_steps=-3)


def test_val_check_interval_larger_than_the_epoch_is_rejected() -> None:
    trainer = quiet_trainer(val_check_interval=20)
    with pytest.raises(ValueError, match=r"`val_check_interval` \(20\) must be less than or"):
        trainer.fit(Regressor(), loader(), loader(n=8))  # 8 batches per epoch
    across = quiet_trainer(val_check_interval=10, check_val_every_n_epoch=None, max_epochs=2)
    across.fit(Regressor(), loader(), loader(n=8))  # counts batches across epochs: allowed
    assert across.global_step == 16


@pytest.mark.parametrize("max_time", ["00:00:00:02", timedelta(seconds=2), {"seconds": 2}])
def test_max_time_accepts_strings_timedeltas_and_dicts(max_time: Any) -> None:
    trainer = quiet_trainer(max_time=max_time, max_epochs=None)
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, Timer))
    assert timer.time_remaining() == 2.0
    assert trainer.max_epochs == -1


# ---------------------------------------------------------------- 5. self.log from callbacks


class LogsEverywhere(pl.Callback):
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        pl_module.log("cb_train_start", 1.0)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        pl_module.log("cb_batch_end", 2.0)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        pl_module.log("cb_val_epoch_end", 3.0)


@pytest.mark.parametrize("sanity_steps", [0, 2])
def test_self_log_from_callback_hooks_works_with_or_without_the_sanity_check(
    sanity_steps: int,
) -> None:
    trainer = quiet_trainer(callbacks=[LogsEverywhere()], num_sanity_val_steps=sanity_steps)
    trainer.fit(Regressor(), loader(), loader(n=8))
    metrics = trainer.callback_metrics
    assert float(metrics["cb_train_start"]) == 1.0
    assert float(metrics["cb_batch_end"]) == 2.0
    assert float(metrics["cb_val_epoch_end"]) == 3.0


def test_reduce_fx_accepts_callables_and_any_case() -> None:
    class Reduced(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            value = float(batch_idx)
            self.log("upper_mean", value, on_step=False, on_epoch=True, reduce_fx="MEAN")
            self.log("torch_max", value, on_step=False, on_epoch=True, reduce_fx=torch.max)
            self.log("builtin_min", value, on_step=False, on_epoch=True, reduce_fx=min)
            self.log("numpy_sum", value, on_step=False, on_epoch=True, reduce_fx=np.sum)
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer()
    trainer.fit(Reduced(), loader())
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert metrics["upper_mean"] == 3.5
    assert metrics["torch_max"] == 7.0
    assert metrics["builtin_min"] == 0.0
    assert metrics["numpy_sum"] == 28.0

    class Median(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.log("x", 1.0, reduce_fx=torch.median)
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match=r"reduce_fx=\{min,max,mean,sum\}.*Found: "):
        quiet_trainer().fit(Median(), loader())


# ---------------------------------------------------------------- 6. paths


def test_tilde_is_expanded_in_default_root_dir_and_checkpoint_dirpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    trainer = pl.Trainer(default_root_dir="~/runs", logger=False, max_epochs=1)
    assert trainer.default_root_dir == str(tmp_path / "runs")
    checkpoint = ModelCheckpoint(dirpath="~/ckpts")
    assert checkpoint.dirpath == os.path.realpath(tmp_path / "ckpts")


def test_checkpoints_go_to_remote_paths_through_fsspec() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    checkpoint = ModelCheckpoint(dirpath="memory://fulmen-ckpts", save_last=True)
    trainer = quiet_trainer(callbacks=[checkpoint], enable_checkpointing=True, max_epochs=2)
    model = Regressor()
    trainer.fit(model, loader())
    assert checkpoint.best_model_path == "memory://fulmen-ckpts/epoch=1-step=16.ckpt"
    assert fs.isfile("/fulmen-ckpts/epoch=1-step=16.ckpt")
    assert not fs.isfile("/fulmen-ckpts/epoch=0-step=8.ckpt")  # top-1: the older one removed
    assert fs.isfile("/fulmen-ckpts/last.ckpt")
    resumed = quiet_trainer(max_epochs=3)
    resumed.fit(Regressor(), loader(), ckpt_path="memory://fulmen-ckpts/last.ckpt")
    assert resumed.global_step == 24
    fs.rm("/fulmen-ckpts", recursive=True)


def test_a_remote_default_root_dir_holds_the_csv_logs_and_checkpoints() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    trainer = pl.Trainer(
        default_root_dir="memory://fulmen-root",
        accelerator="cpu",
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(Regressor(), loader(), loader(n=8))
    version = "/fulmen-root/lightning_logs/version_0"
    assert trainer.log_dir == "memory:/" + version
    with fs.open(f"{version}/metrics.csv", "r") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    assert rows[-1]["val_loss"]
    assert fs.isfile(f"{version}/hparams.yaml")
    assert fs.isfile(f"{version}/checkpoints/epoch=0-step=8.ckpt")
    again = pl.Trainer(default_root_dir="memory://fulmen-root", logger=True, max_epochs=1)
    assert again.logger is not None
    assert again.logger.version == 1
    fs.rm("/fulmen-root", recursive=True)


# ---------------------------------------------------------------- 7. weights_only checkpoints


def test_checkpoints_load_with_plain_torch_load_and_resume_exactly(tmp_path: Path) -> None:
    def run(ckpt_path: str | None, max_epochs: int) -> tuple[pl.Trainer, Regressor]:
        pl.seed_everything(3)
        checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
        trainer = quiet_trainer(
            callbacks=[checkpoint], enable_checkpointing=True, max_epochs=max_epochs
        )
        model = RandomDropout()
        trainer.fit(model, loader(shuffle=True), ckpt_path=ckpt_path)
        return trainer, model

    class RandomDropout(Regressor):
        def __init__(self) -> None:
            super().__init__(dropout=0.5)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            # python and numpy randomness too: their restored states shape the weights
            scale = 1.0 + random.random() * 0.1 + float(np.random.rand()) * 0.1
            return super().training_step(batch, batch_idx) * scale

    _, straight = run(None, 2)
    run(None, 1)
    loaded = torch.load(tmp_path / "last.ckpt")  # torch's weights_only=True default
    assert loaded["epoch"] == 0
    assert "rng_states" in loaded
    assert torch.load(tmp_path / "last.ckpt", weights_only=True).keys() == loaded.keys()
    _, resumed = run(str(tmp_path / "last.ckpt"), 2)
    for key, value in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[key], value, rtol=0, atol=0)


# ---------------------------------------------------------------- 8. CSVLogger


def _rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_logger_without_step_writes_metrics_on_save(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="plain")
    logger.log_metrics({"a": 1.0})
    logger.log_metrics({"a": 2.0})
    logger.save()
    rows = _rows(os.path.join(logger.log_dir, "metrics.csv"))
    assert [(r["a"], r["step"]) for r in rows] == [("1.0", "0"), ("2.0", "1")]


def test_csv_logger_reusing_a_version_starts_a_fresh_file(tmp_path: Path) -> None:
    first = CSVLogger(tmp_path, version=0)
    first.log_metrics({"old": 1.0}, step=0)
    first.save()
    second = CSVLogger(tmp_path, version=0)
    with pytest.warns(UserWarning, match="Previous log files in this directory will be deleted"):
        second.log_metrics({"new": 2.0}, step=0)
    second.save()
    rows = _rows(os.path.join(second.log_dir, "metrics.csv"))
    assert rows == [{"new": "2.0", "step": "0"}]


def test_csv_logger_log_hyperparams_without_params(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams()
    assert os.path.isfile(os.path.join(logger.log_dir, "hparams.yaml"))


# ---------------------------------------------------------------- 9. toggle, Timer, warning


def test_toggle_optimizer_turns_off_only_the_other_optimizers_parameters() -> None:
    seen: list[dict[str, bool]] = []

    class TwoOptimizers(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.a = torch.nn.Linear(8, 1)
            self.b = torch.nn.Linear(8, 1)
            self.free = torch.nn.Linear(8, 1)  # in no optimizer: left alone
            self.frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

        def flags(self) -> dict[str, bool]:
            return {n: p.requires_grad for n, p in self.named_parameters()}

        def training_step(self, batch: Any, batch_idx: int) -> None:
            opt_a, opt_b = self.optimizers()
            self.toggle_optimizer(opt_a)
            seen.append(self.flags())
            self.untoggle_optimizer(opt_a)
            with self.toggled_optimizer(opt_b):
                seen.append(self.flags())
            seen.append(self.flags())

        def configure_optimizers(self) -> Any:
            return (
                torch.optim.SGD([*self.a.parameters(), self.frozen], lr=0.1),
                torch.optim.SGD(self.b.parameters(), lr=0.1),
            )

    quiet_trainer(limit_train_batches=1).fit(TwoOptimizers(), loader())
    a_on = {"a.weight": True, "a.bias": True, "b.weight": False, "b.bias": False}
    assert seen[0] == {**a_on, "free.weight": True, "free.bias": True, "frozen": False}
    b_on = {"a.weight": False, "a.bias": False, "b.weight": True, "b.bias": True}
    assert seen[1] == {**b_on, "free.weight": True, "free.bias": True, "frozen": False}
    assert seen[2] == {
        **dict.fromkeys(a_on, True),
        "free.weight": True,
        "free.bias": True,
        "frozen": False,
    }


def test_timer_at_zero_duration_stops_after_one_batch(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = quiet_trainer(callbacks=[Timer(duration="00:00:00:00")], max_epochs=3)
    trainer.fit(Regressor(), loader())
    assert trainer.global_step == 1
    assert "Time limit reached. Elapsed time is 0:00:00. Signaling Trainer to stop." in (
        capsys.readouterr().out
    )


def test_the_max_epochs_warning_fires_in_fit_not_in_the_constructor() -> None:
    # filterwarnings=error: a warning from the constructor would fail here
    trainer = quiet_trainer(max_epochs=None, limit_train_batches=1)
    with pytest.warns(PossibleUserWarning, match="`max_epochs` was not set. Setting it to 1000"):
        trainer.fit(Regressor(), loader(n=8))
    assert trainer.max_epochs == 1000
    assert trainer.global_step == 1000
    timed = quiet_trainer(max_epochs=None, callbacks=[Timer(duration="00:00:00:00", verbose=False)])
    timed.fit(Regressor(), loader())  # a Timer stops the fit: no limit, no warning
    assert timed.max_epochs == -1
    assert timed.global_step == 1


# ---------------------------------------------------------------- 10. exception types


def test_misconfiguration_exception_and_possible_user_warning_as_lightning_names_them() -> None:
    assert issubclass(MisconfigurationException, ValueError)
    assert FromExceptions is MisconfigurationException
    assert FromWarnings is PossibleUserWarning
    assert issubclass(PossibleUserWarning, UserWarning)
    assert pl.utilities.MisconfigurationException is MisconfigurationException
