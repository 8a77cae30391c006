"""The Trainer ends with exactly the weights of a hand-written PyTorch loop (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch

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
