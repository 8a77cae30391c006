"""Where a run's dataloaders come from, and how many batches of each it uses."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.precision import Precision
    from fulmen.train.strategy import Strategy


def extract_batch_size(batch: Any) -> int:
    """The size of the first dimension of the first tensor in ``batch`` (1 when there is none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, str | bytes):
        return len(batch)
    if isinstance(batch, Mapping):
        for value in batch.values():
            return extract_batch_size(value)
    if isinstance(batch, Sequence):
        for value in batch:
            return extract_batch_size(value)
    return 1


def as_loader_list(loaders: Any) -> list[Any]:
    """One dataloader, a list, or a dict of them -> a list (empty for None)."""
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    if isinstance(loaders, list | tuple):
        return list(loaders)
    return [loaders]


def loader_length(loader: Any) -> float:
    """``len(loader)``, or infinity for an iterable without a length."""
    try:
        return float(len(loader))
    except (TypeError, NotImplementedError):
        return math.inf


def limit_batches(loader: Any, limit: int | float | None, argument: str) -> float:
    """How many batches of ``loader`` to use under ``limit_*_batches`` (a count or a share)."""
    length = loader_length(loader)
    if limit is None:
        return length
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
        raise ValueError(
            f"Trainer({argument}={limit!r}): expected an int >= 0 or a float in [0, 1]"
        )
    if isinstance(limit, int):
        return float(min(limit, length))
    if limit > 1.0:
        raise ValueError(f"Trainer({argument}={limit!r}): a float must be in [0, 1]")
    if limit == 1.0:
        return length
    if math.isinf(length):
        raise ValueError(
            f"Trainer({argument}={limit!r}): a fraction needs a dataloader with a length; "
            "pass an int number of batches"
        )
    return float(int(length * limit)) if length * limit >= 1 or limit == 0 else 1.0


def val_check_batch(interval: int | float, num_batches: float) -> float:
    """Validate every how many training batches (infinity: only at the end of the epoch)."""
    if not isinstance(interval, float):
        return float(interval)
    if not 0.0 < interval <= 1.0:
        raise ValueError(f"Trainer(val_check_interval={interval!r}): a float must be in (0, 1]")
    if math.isinf(num_batches):
        if interval != 1.0:
            raise ValueError(
                f"Trainer(val_check_interval={interval!r}): a fraction needs a training "
                "dataloader with a length; pass an int number of batches"
            )
        return math.inf
    return float(max(1, int(num_batches * interval)))


def request(source: Any, name: str) -> Any:
    """Call ``source.<name>()`` when it exists and is implemented, else None."""
    fn = getattr(source, name, None)
    if fn is None:
        return None
    try:
        return fn()
    except NotImplementedError:
        return None


def batch_transfer(
    module: LightningModule, precision: Precision, strategy: Strategy
) -> Callable[[Any, int], Any]:
    """The batch-to-device function of a run, chosen once (the identity on CPU in fp32)."""
    from fulmen.train.module import LightningModule

    custom = any(
        getattr(type(module), name) is not getattr(LightningModule, name)
        for name in (
            "on_before_batch_transfer",
            "transfer_batch_to_device",
            "on_after_batch_transfer",
        )
    )
    if custom:
        device = strategy.root_device

        def to_device(batch: Any, dataloader_idx: int) -> Any:
            batch = module.on_before_batch_transfer(precision.convert_input(batch), dataloader_idx)
            batch = module.transfer_batch_to_device(batch, device, dataloader_idx)
            return module.on_after_batch_transfer(batch, dataloader_idx)

        return to_device
    if precision.dtype is not None or strategy.root_device.type != "cpu":
        return lambda batch, idx: strategy.batch_to_device(precision.convert_input(batch))
    return lambda batch, idx: batch
