"""The strategy seam: devices, the single-device strategy, and a stand-in for a 2-process one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fulmen.train.strategy import (
    DDPStrategy,
    SingleDeviceStrategy,
    Strategy,
    move_to_device,
    resolve_strategy,
    select_device,
)
from tests.train.helpers import Regressor, loader, quiet_trainer


def test_select_device_and_resolve_strategy() -> None:
    assert select_device("cpu", 1) == torch.device("cpu")
    assert select_device("auto", "auto").type in ("cpu", "cuda")
    assert select_device("cpu", [0]) == torch.device("cpu")
    strategy = resolve_strategy("auto", torch.device("cpu"))
    assert isinstance(strategy, SingleDeviceStrategy)
    assert isinstance(strategy, Strategy)
    assert isinstance(resolve_strategy("ddp_spawn", "cpu", 2), DDPStrategy)
    with pytest.raises(ValueError, match=r"deepspeed.*not available"):
        resolve_strategy("deepspeed", torch.device("cpu"))
    with pytest.raises(TypeError, match="expected a str or Strategy"):
        resolve_strategy(3, torch.device("cpu"))


def test_move_to_device_handles_nested_batches() -> None:
    batch = {"x": torch.ones(2), "pair": (torch.zeros(1), "label"), "n": 3}
    moved = move_to_device(batch, torch.device("cpu"))
    assert moved["pair"][1] == "label"
    assert moved["n"] == 3
    assert torch.equal(moved["x"], batch["x"])


class TwoRanks(SingleDeviceStrategy):
    """Pretends to be rank 1 of 2: reductions double sums, as an all-reduce of equal ranks would."""

    world_size = 2
    global_rank = 1

    def __init__(self) -> None:
        super().__init__("cpu")
        self.steps = 0
        self.reduced: list[str] = []

    @property
    def is_global_zero(self) -> bool:
        return False

    def training_step(self, module: Any, batch: Any, batch_idx: int) -> Any:
        self.steps += 1
        return super().training_step(module, batch, batch_idx)

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor:
        self.reduced.append(reduce_fx)
        return tensor * 2 if reduce_fx == "sum" else tensor


def test_a_strategy_object_plugs_into_the_loop(tmp_path: Path) -> None:
    class Synced(Regressor):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("mean", 3.0, sync_dist=True)
            self.log("total", 1.0, sync_dist=True, reduce_fx="sum")
            self.log("local", 1.0, reduce_fx="sum")

    strategy = TwoRanks()
    trainer = quiet_trainer(strategy=strategy, limit_train_batches=3)
    trainer.fit(Synced(), loader())
    assert strategy.steps == 3
    assert trainer.world_size == 2
    assert not trainer.is_global_zero
    results = trainer.validate(Synced(), loader(n=16), verbose=False)
    assert results == [{"mean": 3.0, "total": 4.0, "local": 2.0}]
    assert "sum" in strategy.reduced
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()  # only global rank zero writes
