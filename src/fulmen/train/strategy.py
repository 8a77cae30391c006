"""Strategies: where the model lives and how processes talk. One object, named by a string.

The loop only talks to a strategy through the ``Strategy`` protocol below, so distributed training
(DDP) plugs in as another class without touching the loop. Today there is one:
``SingleDeviceStrategy`` (one process, one device), chosen by ``strategy="auto"``.

What the loop asks of a strategy, and when:

- ``setup_module(module)`` once per run, after the module is on ``root_device``: returns the model
  to call for training (DDP wraps it here);
- ``training_step(module, batch, batch_idx)`` for every training step (DDP routes it through the
  wrapped model's forward, as Lightning does, so gradients are all-reduced);
- ``process_dataloader(dataloader, stage)`` for every dataloader (DDP injects a sampler);
- ``batch_to_device(batch)`` for every batch;
- ``backward_sync(should_sync)`` around every backward (DDP skips the all-reduce with ``no_sync``
  on batches that only accumulate);
- ``reduce(tensor, reduce_fx)`` for ``self.log(..., sync_dist=True)``; ``reduce_boolean_decision``
  for ``should_stop``; ``barrier``, ``broadcast``, ``all_gather`` for everything else;
- ``teardown()`` once at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = [
    "SingleDeviceStrategy",
    "Strategy",
    "move_to_device",
    "resolve_strategy",
    "select_device",
]


@runtime_checkable
class Strategy(Protocol):
    """What the Trainer needs from a strategy (single device today, DDP later)."""

    root_device: torch.device
    global_rank: int
    local_rank: int
    node_rank: int
    world_size: int

    @property
    def is_global_zero(self) -> bool: ...

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module: ...

    def training_step(self, module: Any, batch: Any, batch_idx: int) -> Any: ...

    def process_dataloader(self, dataloader: Any, stage: str) -> Any: ...

    def batch_to_device(self, batch: Any) -> Any: ...

    def backward_sync(self, should_sync: bool) -> contextlib.AbstractContextManager[Any]: ...

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor: ...

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool: ...

    def barrier(self, name: str | None = None) -> None: ...

    def broadcast(self, obj: Any, src: int = 0) -> Any: ...

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor: ...

    def teardown(self) -> None: ...


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``; other values stay as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if hasattr(batch, "to") and callable(batch.to) and not isinstance(batch, type):
        with contextlib.suppress(TypeError):
            return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, Sequence) and not isinstance(batch, str | bytes):
        return type(batch)(move_to_device(v, device) for v in batch)  # type: ignore[call-arg]
    return batch


_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
_NULL_CONTEXT = contextlib.nullcontext()  # reusable: entering it does nothing


def select_device(accelerator: str, devices: Any) -> torch.device:  # noqa: PLR0912
    """The one device for ``accelerator``/``devices``; a clear error names what is wrong."""
    if not isinstance(accelerator, str) or accelerator.lower() not in _ACCELERATORS:
        raise ValueError(
            f"Trainer(accelerator={accelerator!r}) is not supported; "
            f"choose one of {', '.join(repr(a) for a in _ACCELERATORS)}"
        )
    accelerator = accelerator.lower()
    count: int | None = None
    index = 0
    if isinstance(devices, list | tuple):
        if len(devices) != 1:
            count = len(devices)
        else:
            index = int(devices[0])
    elif isinstance(devices, str) and devices not in ("auto", "-1"):
        parts = [p for p in devices.split(",") if p.strip()]
        if len(parts) > 1 or devices.endswith(","):
            count = len(parts)
            if len(parts) == 1:
                index, count = int(parts[0]), None
        else:
            count = int(parts[0])
    elif isinstance(devices, int) and devices not in (-1,):
        count = devices
    if count is not None and count != 1:
        raise ValueError(
            f"Trainer(devices={devices!r}) asks for {count} devices; multi-device training (DDP) "
            "is not available in this version of fulmen yet. Use devices=1."
        )
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"Trainer(accelerator={accelerator!r}): no CUDA device is available")
        return torch.device("cuda", index)
    if accelerator == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("Trainer(accelerator='mps'): no MPS device is available")
        return torch.device("mps")
    return torch.device("cpu")


class SingleDeviceStrategy:
    """One process, one device: every collective is the identity."""

    name = "single_device"
    global_rank = 0
    local_rank = 0
    node_rank = 0
    world_size = 1

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.root_device = torch.device(device)
        # DataLoader batches arrive on the CPU: on a CPU device there is nothing to move.
        self._moves = self.root_device.type != "cpu"

    @property
    def is_global_zero(self) -> bool:
        return True

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def training_step(self, module: Any, batch: Any, batch_idx: int) -> Any:
        return module.training_step(batch, batch_idx)

    def process_dataloader(self, dataloader: Any, stage: str) -> Any:
        return dataloader

    def batch_to_device(self, batch: Any) -> Any:
        return move_to_device(batch, self.root_device) if self._moves else batch

    def backward_sync(self, should_sync: bool) -> contextlib.AbstractContextManager[Any]:
        return _NULL_CONTEXT

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor:
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def barrier(self, name: str | None = None) -> None:
        return None

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
        return tensor

    def teardown(self) -> None:
        return None


def resolve_strategy(strategy: Any, device: torch.device) -> Strategy:
    """``strategy="auto"`` / ``"single_device"`` / a Strategy object -> the strategy to use."""
    if isinstance(strategy, str):
        if strategy in ("auto", "single_device"):
            return SingleDeviceStrategy(device)
        if strategy.startswith(("ddp", "fsdp", "deepspeed")):
            raise ValueError(
                f"Trainer(strategy={strategy!r}) is not available in this version of fulmen yet; "
                "distributed training is planned. Use strategy='auto'."
            )
        raise ValueError(
            f"Trainer(strategy={strategy!r}) is unknown; choose 'auto' or 'single_device', "
            "or pass a Strategy object"
        )
    if isinstance(strategy, Strategy):
        return strategy
    raise TypeError(
        f"Trainer(strategy=...) got {type(strategy).__name__}; expected a str or Strategy"
    )
