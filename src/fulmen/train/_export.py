"""TorchScript export of a LightningModule, and the datamodule's dataloader summary.

``to_torchscript`` scripts (or traces) the module in eval mode and puts its mode back; the
Lightning-only properties of LightningModule are listed in ``JIT_UNUSED_PROPERTIES`` so that the
TorchScript compiler skips them (they read the Trainer, which TorchScript cannot compile).
"""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fulmen.train.module import LightningDataModule, LightningModule

JIT_UNUSED_PROPERTIES = [
    "trainer",
    "automatic_optimization",
    "global_step",
    "current_epoch",
    "global_rank",
    "local_rank",
    "device",
    "dtype",
    "logger",
    "loggers",
    "on_gpu",
    "hparams",
    "hparams_initial",
    "example_input_array",
]


def to_torchscript(
    module: LightningModule,
    file_path: str | os.PathLike[str] | None = None,
    method: str | None = "script",
    example_inputs: Any = None,
    **kwargs: Any,
) -> Any:
    if method not in ("script", "trace"):
        raise ValueError(
            "The 'method' parameter only supports 'script' or 'trace', but value given was: "
            f"{method}"
        )
    mode = module.training
    # TorchScript reads every attribute while it compiles; `trainer` must not raise then.
    module.__dict__["_jit_is_scripting"] = True
    try:
        if method == "script":
            scripted = torch.jit.script(module.eval(), **kwargs)
        else:
            if example_inputs is None:
                example_inputs = module.example_input_array
            if example_inputs is None:
                raise ValueError(
                    "Choosing method=`trace` requires either `example_inputs` or "
                    "`model.example_input_array` to be defined."
                )
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
            from fulmen.train.strategy import move_to_device

            example_inputs = move_to_device(example_inputs, device)
            scripted = torch.jit.trace(  # type: ignore[no-untyped-call]
                func=module.eval(), example_inputs=example_inputs, **kwargs
            )
    finally:
        module.__dict__.pop("_jit_is_scripting", None)
        module.train(mode)
    if file_path is not None:
        torch.jit.save(scripted, os.fspath(file_path))
    return scripted


def _size(loader: Any) -> str:
    dataset = getattr(loader, "dataset", None)
    return str(len(dataset)) if isinstance(dataset, Sized) else "NA"


def describe_datamodule(datamodule: LightningDataModule) -> str:
    """One line per dataloader method: ``{Train dataloader: size=N}``, ``{... : None}`` when the
    method is missing or fails, ``1. size=N ; 2. size=M`` for several loaders (Lightning's)."""
    lines = []
    for title, method in (
        ("Train dataloader", "train_dataloader"),
        ("Validation dataloader", "val_dataloader"),
        ("Test dataloader", "test_dataloader"),
        ("Predict dataloader", "predict_dataloader"),
    ):
        try:
            loader = getattr(datamodule, method)()
        except Exception:  # not defined, or its datasets are not set up yet
            loader = None
        if loader is None or (isinstance(loader, list | tuple) and not loader):
            shown = "None"
        elif isinstance(loader, list | tuple):
            shown = " ; ".join(f"{i}. size={_size(dl)}" for i, dl in enumerate(loader, start=1))
        elif isinstance(loader, dict):
            shown = " ; ".join(
                f"{i}. size={_size(dl)}" for i, dl in enumerate(loader.values(), start=1)
            )
        else:
            shown = f"size={_size(loader)}"
        lines.append(f"{{{title}: {shown}}}")
    return os.linesep.join(lines)
