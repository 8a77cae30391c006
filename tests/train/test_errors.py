"""Errors name the culprit; Ctrl-C shuts down gracefully."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import fulmen as pl
from tests.train.helpers import Regressor, loader, quiet_trainer
from tests.train.test_logging import Recorder


def test_missing_training_step_and_configure_optimizers() -> None:
    class NoStep(pl.LightningModule):
        def configure_optimizers(self) -> Any:
            return None

    class NoOptim(pl.LightningModule):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return None

    with pytest.raises(NotImplementedError, match="NoStep has no training_step"):
        quiet_trainer().fit(NoStep(), loader())
    with pytest.raises(NotImplementedError, match="NoOptim has no configure_optimizers"):
        quiet_trainer().fit(NoOptim(), loader())


def test_invalid_returns_show_what_was_returned() -> None:
    class BadOptim(Regressor):
        def configure_optimizers(self) -> Any:
            return "adam"

    class BadStep(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return {"los": torch.tensor(1.0)}

    class Detached(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return torch.tensor(1.0)

    with pytest.raises(ValueError, match=r"configure_optimizers must return .* got str 'adam'"):
        quiet_trainer().fit(BadOptim(), loader())
    with pytest.raises(
        ValueError, match=r"training_step must return .* got dict with keys \['los'\]"
    ):
        quiet_trainer().fit(BadStep(), loader())
    with pytest.raises(ValueError, match="does not require grad"):
        quiet_trainer().fit(Detached(), loader())


def test_plateau_without_monitor_and_unknown_scheduler_keys() -> None:
    class Plateau(Regressor):
        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return [opt], [torch.optim.lr_scheduler.ReduceLROnPlateau(opt)]

    with pytest.raises(ValueError, match="ReduceLROnPlateau needs a metric to monitor"):
        quiet_trainer().fit(Plateau(), loader())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "8-true"}, r"precision='8-true'.*'32-true', '16-mixed'"),
        ({"accelerator": "tpu"}, r"accelerator='tpu'.*'cpu'"),
        ({"strategy": "fsdp"}, r"strategy='fsdp'.*not available"),
        ({"strategy": "nonsense"}, r"strategy='nonsense'\) is unknown"),
        (
            {"accelerator": "cpu", "devices": 2, "strategy": "single_device"},
            r"single_device.*devices=2.*'ddp'",
        ),
        ({"devices": "two"}, r"devices='two'.*not understood"),
        ({"num_nodes": 0}, r"num_nodes=0.*>= 1"),
        ({"gradient_clip_algorithm": "l3"}, r"`gradient_clip_algorithm` l3 is invalid. Allowed"),
        ({"accumulate_grad_batches": 0}, r"accumulate_grad_batches=0"),
    ],
)
def test_bad_trainer_arguments_name_argument_value_and_choices(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        quiet_trainer(**kwargs)


def test_ckpt_path_best_without_model_checkpoint() -> None:
    with pytest.raises(ValueError, match=r'ckpt_path="best"\) needs a ModelCheckpoint'):
        quiet_trainer().fit(Regressor(), loader(), ckpt_path="best")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        quiet_trainer().fit(Regressor(), loader(), ckpt_path="/nonexistent/x.ckpt")


def test_a_raising_callback_is_named_with_its_hook_and_sees_on_exception() -> None:
    seen: list[str] = []

    class Exploding(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            raise RuntimeError("boom")

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            seen.append(type(exception).__name__)

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="boom") as info:
        quiet_trainer(callbacks=[Exploding()], logger=recorder).fit(Regressor(), loader())
    assert "(raised in callback Exploding.on_train_epoch_start)" in info.value.__notes__
    assert seen == ["RuntimeError"]
    assert recorder.finalized == ["failed"]


def test_keyboard_interrupt_stops_gracefully_and_says_so() -> None:
    events: list[str] = []

    class CtrlC(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if batch_idx == 2:
                raise KeyboardInterrupt
            return super().training_step(batch, batch_idx)

    class Watch(pl.Callback):
        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            events.append(f"on_exception:{type(exception).__name__}")

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            events.append("teardown")

    recorder = Recorder()
    trainer = quiet_trainer(callbacks=[Watch()], logger=recorder)
    with pytest.raises(SystemExit) as info:
        trainer.fit(CtrlC(), loader())
    assert info.value.code == 1
    assert events == ["on_exception:KeyboardInterrupt", "teardown"]
    assert recorder.finalized == ["interrupted"]
    assert trainer.interrupted
    assert trainer.global_step == 2


def test_an_unknown_hook_name_is_an_error() -> None:
    trainer = quiet_trainer(limit_train_batches=1)
    trainer.fit(Regressor(), loader())
    with pytest.raises(KeyError, match="'on_trian_start' is not a hook"):
        trainer._event("on_trian_start")
