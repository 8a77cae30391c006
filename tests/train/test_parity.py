"""The Trainer ends with exactly the weights of a hand-written PyTorch loop (fp32, CPU)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import fulmen as pl
from tests.train.helpers import Regressor, assert_same_weights, loader, quiet_trainer, weights


def hand_loop(
    model: Regressor, epochs: int, accumulate: int, clip: float | None, algorithm: str = "norm"
) -> None:
    data = loader(shuffle=True, generator=torch.Generator().manual_seed(3))
    [opt], [sched] = model.configure_optimizers()
    for _ in range(epochs):
        model.train()
        for i, (x, y) in enumerate(data):
            loss = torch.nn.functional.mse_loss(model(x), y)
            (loss / accumulate if accumulate > 1 else loss).backward()
            if (i + 1) % accumulate == 0 or i + 1 == len(data):
                if clip is not None and algorithm == "norm":
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                elif clip is not None:
                    torch.nn.utils.clip_grad_value_(model.parameters(), clip)
                opt.step()
                opt.zero_grad()
        sched.step()


@pytest.mark.parametrize(
    ("accumulate", "clip", "algorithm"),
    [
        (1, None, "norm"),
        (3, None, "norm"),
        (1, 0.05, "norm"),
        (3, 0.05, "norm"),
        (2, 0.01, "value"),
    ],
)
def test_trainer_matches_a_hand_written_loop(
    accumulate: int, clip: float | None, algorithm: str
) -> None:
    torch.manual_seed(0)
    by_hand = Regressor(scheduler=True)
    torch.manual_seed(0)
    by_trainer = Regressor(scheduler=True)
    assert_same_weights(weights(by_hand), weights(by_trainer))

    hand_loop(by_hand, epochs=3, accumulate=accumulate, clip=clip, algorithm=algorithm)
    trainer = quiet_trainer(
        max_epochs=3,
        accumulate_grad_batches=accumulate,
        gradient_clip_val=clip,
        gradient_clip_algorithm=algorithm,
    )
    trainer.fit(by_trainer, loader(shuffle=True, generator=torch.Generator().manual_seed(3)))

    assert_same_weights(weights(by_hand), weights(by_trainer))
    steps_per_epoch = -(-8 // accumulate)
    assert trainer.global_step == 3 * steps_per_epoch
    assert trainer.current_epoch == 3


class Recorder(pl.Callback):
    """Overrides a hook between backward and the optimizer step: the loop takes every layer."""

    def __init__(self) -> None:
        self.paths: list[bool] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: Any, optimizer: Any) -> None:
        self.paths.append(trainer._plain_optimizer is not None)


class StepPath(pl.Callback):
    def __init__(self) -> None:
        self.plain: list[bool] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.plain.append(trainer._plain_optimizer is not None)


def test_the_plain_step_and_the_layered_step_end_with_the_same_weights() -> None:
    fast, layered = Regressor(scheduler=True), Regressor(scheduler=True)
    layered.load_state_dict(fast.state_dict())
    path, recorder = StepPath(), Recorder()
    for model, callbacks in ((fast, [path]), (layered, [recorder])):
        torch.manual_seed(0)
        data = loader(shuffle=True, generator=torch.Generator().manual_seed(3))
        quiet_trainer(max_epochs=2, callbacks=callbacks).fit(model, data)
    assert path.plain
    assert all(path.plain)
    assert recorder.paths
    assert not any(recorder.paths)
    assert_same_weights(weights(fast), weights(layered))


@pytest.mark.parametrize(
    "options",
    [
        {"accumulate_grad_batches": 2},
        {"gradient_clip_val": 0.5},
        {"precision": "bf16-mixed"},
    ],
)
def test_accumulation_clipping_and_autocast_take_the_layered_step(options: dict[str, Any]) -> None:
    path = StepPath()
    quiet_trainer(callbacks=[path], limit_train_batches=4, **options).fit(Regressor(), loader())
    assert path.plain
    assert not any(path.plain)


def test_an_overridden_optimizer_step_takes_the_layered_step() -> None:
    class Warmup(Regressor):
        def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            super().optimizer_step(*args, **kwargs)

    path = StepPath()
    quiet_trainer(callbacks=[path], limit_train_batches=3).fit(Warmup(), loader())
    assert path.plain
    assert not any(path.plain)
