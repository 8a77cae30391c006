"""Where a run's dataloaders come from, and how many batches of each it uses."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from fulmen.train._hooks import is_overridden

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.precision import Precision
    from fulmen.train.strategy import Strategy
    from fulmen.train.trainer import Trainer


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
        is_overridden(name, module, LightningModule)
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
    return identity_transfer


def identity_transfer(batch: Any, dataloader_idx: int) -> Any:
    """The batch transfer on the CPU in a true precision: nothing to do (the loops skip it)."""
    return batch


def source(trainer: Trainer, name: str) -> Any:
    if trainer.datamodule is not None:
        return request(trainer.datamodule, name)
    return request(trainer.lightning_module, name)


def load_train_dataloader(trainer: Trainer, given: Any = None) -> None:
    loader = given if given is not None else source(trainer, "train_dataloader")
    if loader is None:
        if trainer.train_dataloader is not None and given is None:
            loader = trainer.train_dataloader
        else:
            raise ValueError(
                "fit() needs training data: pass train_dataloaders, a datamodule, or define "
                "train_dataloader() on the module"
            )
    trainer._train_given = given
    trainer.train_dataloader = trainer.strategy.process_dataloader(loader, "fit")
    trainer.num_training_batches = limit_batches(
        trainer.train_dataloader, trainer.limit_train_batches, "limit_train_batches"
    )
    if trainer.num_training_batches == 0:
        warnings.warn(
            "limit_train_batches gives 0 training batches: fit does no training",
            UserWarning,
            stacklevel=3,
        )
    trainer._val_check_batch = val_check_batch(
        trainer.val_check_interval, trainer.num_training_batches
    )
    interval = trainer.val_check_interval
    if (
        isinstance(interval, int)
        and interval > trainer.num_training_batches
        and trainer.check_val_every_n_epoch is not None
    ):  # Lightning's check and message
        raise ValueError(
            f"`val_check_interval` ({interval}) must be less than or equal to the number of the "
            f"training batches ({trainer.num_training_batches:g}). If you want to disable "
            "validation set `limit_val_batches` to 0.0 instead. If you want to validate based on "
            "the total training batches, set `check_val_every_n_epoch=None`."
        )


def train_loader_for_epoch(trainer: Trainer) -> Any:
    n = trainer.reload_dataloaders_every_n_epochs
    if n and trainer.current_epoch > 0 and trainer.current_epoch % n == 0:
        load_train_dataloader(trainer, trainer._train_given)
    loader = trainer.train_dataloader
    sampler = getattr(loader, "sampler", None)
    set_epoch = getattr(sampler, "set_epoch", None)
    if set_epoch is not None:
        set_epoch(trainer.current_epoch)
    return loader


def load_val_dataloaders(trainer: Trainer, given: Any = None) -> None:
    from fulmen.train.module import LightningModule

    if trainer.overfit_batches and given is None:
        loaders = [trainer.train_dataloader]
    else:
        loaders = as_loader_list(given if given is not None else source(trainer, "val_dataloader"))
    trainer.val_dataloaders = [
        trainer.strategy.process_dataloader(dl, "validate") for dl in loaders
    ]
    trainer.num_val_batches = [
        limit_batches(dl, trainer.limit_val_batches, "limit_val_batches")
        for dl in trainer.val_dataloaders
    ]
    uses_val = is_overridden("validation_step", trainer.lightning_module, LightningModule)
    if not uses_val:
        trainer.num_val_batches = [0.0 for _ in trainer.val_dataloaders]


def epoch_validates(trainer: Trainer) -> bool:
    n = trainer.check_val_every_n_epoch
    return sum(trainer.num_val_batches) > 0 and (n is None or (trainer.current_epoch + 1) % n == 0)


def validation_due(trainer: Trainer, batch_idx: int, limit: float) -> bool:
    if not trainer.num_val_batches or not epoch_validates(trainer):
        return False
    count = batch_idx + 1
    if trainer.check_val_every_n_epoch is None:  # an int interval counts batches across epochs
        count = trainer._batches_that_stepped
    every = trainer._val_check_batch
    return math.isfinite(every) and count % every == 0
