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
    """Overrides every hook between training_step and the optimizer step (and does nothing)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_before_zero_grad(self, trainer: pl.Trainer, pl_module: Any, optimizer: Any) -> None:
        self.calls.append("on_before_zero_grad")

    def on_before_backward(self, trainer: pl.Trainer, pl_module: Any, loss: Any) -> None:
        self.calls.append("on_before_backward")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.calls.append("on_after_backward")

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: Any, optimizer: Any) -> None:
        self.calls.append("on_before_optimizer_step")


def trained_like_the_hand_loop(model: Regressor, **trainer_options: Any) -> None:
    """Train ``model`` 2 epochs and a copy by hand, and check they end with the same weights."""
    torch.manual_seed(0)
    by_hand = Regressor(scheduler=True)
    by_hand.load_state_dict(model.state_dict())
    hand_loop(by_hand, epochs=2, accumulate=1, clip=None)
    data = loader(shuffle=True, generator=torch.Generator().manual_seed(3))
    quiet_trainer(max_epochs=2, **trainer_options).fit(model, data)
    assert_same_weights(weights(by_hand), weights(model))


def test_hooks_between_the_step_s_calls_leave_the_weights_of_the_hand_written_loop() -> None:
    recorder = Recorder()
    trained_like_the_hand_loop(Regressor(scheduler=True), callbacks=[recorder])
    assert recorder.calls[:4] == [
        "on_before_zero_grad",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
    ]
    assert len(recorder.calls) == 4 * 2 * 8  # each hook at each of the 8 batches of 2 epochs


def test_an_overridden_optimizer_step_leaves_the_weights_of_the_hand_written_loop() -> None:
    class Warmup(Regressor):
        def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            self.stepped = getattr(self, "stepped", 0) + 1
            super().optimizer_step(*args, **kwargs)

    model = Warmup(scheduler=True)
    trained_like_the_hand_loop(model)
    assert model.stepped == 2 * 8


@pytest.mark.parametrize(
    "options",
    [{"accumulate_grad_batches": 2}, {"gradient_clip_val": 0.5}, {"precision": "bf16-mixed"}],
)
def test_accumulation_clipping_and_autocast_take_the_same_step(options: dict[str, Any]) -> None:
    """One step for every configuration: accumulation, clipping and autocast change what it does,
    not which code runs (the weights match the hand loop in test_trainer_matches_...)."""
    steps: list[int] = []

    class Counts(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            steps.append(trainer.global_step)

    trainer = quiet_trainer(callbacks=[Counts()], limit_train_batches=4, **options)
    trainer.fit(Regressor(), loader())
    assert trainer._train_step == trainer._automatic_step
    accumulate = options.get("accumulate_grad_batches", 1)
    assert steps == [(i + 1) // accumulate for i in range(4)]
