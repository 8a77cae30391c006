"""Precision names and aliases; CPU runs of every precision; the scaler's state in checkpoints.
CUDA paths run on a GPU (the ``gpu`` marker) and are skipped elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fulmen.train.precision import Precision, normalize_precision
from tests.train.helpers import Regressor, loader, quiet_trainer


@pytest.mark.parametrize(
    ("given", "name"),
    [
        (16, "16-mixed"),
        ("16", "16-mixed"),
        ("bf16", "bf16-mixed"),
        (32, "32-true"),
        ("32", "32-true"),
        (64, "64-true"),
        ("16-true", "16-true"),
        ("bf16-true", "bf16-true"),
        ("64-true", "64-true"),
    ],
)
def test_aliases(given: Any, name: str) -> None:
    assert normalize_precision(given) == name


def test_unknown_precision_lists_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"precision=True\) is not supported; choose one of '32-true'"
    ):
        normalize_precision(True)


class Probe(Regressor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[torch.dtype, torch.dtype]] = set()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self(x)
        self.seen.add((x.dtype, out.dtype))
        loss = torch.nn.functional.mse_loss(out.float(), y.float())
        self.log("loss", loss)
        return loss


@pytest.mark.parametrize(
    ("precision", "input_dtype", "output_dtype", "weight_dtype"),
    [
        ("32-true", torch.float32, torch.float32, torch.float32),
        ("bf16-mixed", torch.float32, torch.bfloat16, torch.float32),
        ("16-mixed", torch.float32, torch.float16, torch.float32),
        ("bf16-true", torch.bfloat16, torch.bfloat16, torch.bfloat16),
        ("16-true", torch.float16, torch.float16, torch.float16),
        ("64-true", torch.float64, torch.float64, torch.float64),
    ],
)
def test_every_precision_trains_on_cpu(
    precision: str, input_dtype: torch.dtype, output_dtype: torch.dtype, weight_dtype: torch.dtype
) -> None:
    model = Probe()
    before = [p.detach().clone().float() for p in model.parameters()]
    trainer = quiet_trainer(precision=precision, limit_train_batches=4)
    trainer.fit(model, loader())
    assert trainer.precision == precision
    assert model.seen == {(input_dtype, output_dtype)}
    assert model.net[0].weight.dtype == weight_dtype
    after = [p.detach().float() for p in model.parameters()]
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_fp16_mixed_checkpoints_the_scaler_state(tmp_path: Path) -> None:
    trainer = quiet_trainer(precision="16-mixed", limit_train_batches=2)
    trainer.fit(Regressor(), loader())
    assert trainer.precision_plugin.scaler.is_enabled()
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    state = torch.load(tmp_path / "a.ckpt", weights_only=False)["precision"]
    assert state["scale"] == trainer.precision_plugin.scaler.get_scale()
    resumed = quiet_trainer(precision="16-mixed", max_epochs=2, limit_train_batches=2)
    resumed.fit(Regressor(), loader(), ckpt_path=tmp_path / "a.ckpt")
    assert resumed.global_step == 4


def test_scaler_is_a_do_nothing_object_without_fp16() -> None:
    plugin = Precision("bf16-mixed")
    assert not plugin.scaler.is_enabled()
    assert plugin.state_dict() == {}


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32-true"])
def test_cuda_precisions_train(precision: str) -> None:
    model = Probe()
    trainer = quiet_trainer(
        accelerator="gpu", devices=1, precision=precision, limit_train_batches=4
    )
    trainer.fit(model, loader())
    assert model.device.type == "cuda"
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.gpu
@cuda
def test_cuda_resume_restores_the_scaler_and_the_cpu_rng(tmp_path: Path) -> None:
    # a checkpoint loaded onto the GPU carries its RNG states there; resuming must still work
    trainer = quiet_trainer(accelerator="gpu", devices=1, precision="16-mixed")
    trainer.fit(Regressor(), loader())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    resumed = quiet_trainer(accelerator="gpu", devices=1, precision="16-mixed", max_epochs=2)
    model = Regressor()
    resumed.fit(model, loader(), ckpt_path=tmp_path / "a.ckpt")
    assert resumed.current_epoch == 2
    assert model.device.type == "cuda"
    assert resumed.precision_plugin.state_dict() != {}
