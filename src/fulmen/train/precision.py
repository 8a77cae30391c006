"""Precision: one small object per readable name ("32-true", "16-mixed", "bf16-mixed", ...).

The loop uses five methods and never asks which precision it has:

- ``convert_module(module)`` once (``*-true`` precisions cast the weights);
- ``convert_input(batch)`` per batch (``*-true`` precisions cast floating-point tensors);
- ``forward_context()`` around every step (``torch.autocast`` for ``*-mixed``, else a no-op);
- ``backward(loss)`` (scaled by the gradient scaler for float16);
- ``optimizer_step(optimizer, closure, before_step)``: run the closure (forward and backward),
  unscale, call ``before_step`` (hooks, clipping), step; the scaler skips steps with inf/NaN grads.

The gradient scaler exists only for "16-mixed"; everywhere else it is ``GradScaler(enabled=False)``,
a do-nothing object, and its state goes into checkpoints all the same.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["PRECISIONS", "Precision", "normalize_precision"]

_NULL_CONTEXT = contextlib.nullcontext()  # reusable: entering it does nothing

# accepted spelling -> canonical name
_ALIASES: dict[Any, str] = {
    16: "16-mixed",
    "16": "16-mixed",
    "16-mixed": "16-mixed",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
    32: "32-true",
    "32": "32-true",
    "32-true": "32-true",
    64: "64-true",
    "64": "64-true",
    "64-true": "64-true",
    "16-true": "16-true",
    "bf16-true": "bf16-true",
}
PRECISIONS: tuple[str, ...] = (
    "32-true",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "64-true",
)
_TRUE_DTYPES = {
    "16-true": torch.float16,
    "bf16-true": torch.bfloat16,
    "64-true": torch.float64,
}


def normalize_precision(precision: Any) -> str:
    """The canonical name for ``precision`` (aliases 16, "16", "bf16", 32, 64 accepted)."""
    name = _ALIASES.get(precision) if isinstance(precision, int | str) else None
    if name is None or isinstance(precision, bool):
        raise ValueError(
            f"Trainer(precision={precision!r}) is not supported; choose one of "
            f"{', '.join(repr(p) for p in PRECISIONS)} (or the aliases 16, '16', 'bf16', 32, 64)"
        )
    return name


def _cast(batch: Any, dtype: torch.dtype) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(dtype) if batch.is_floating_point() else batch
    if isinstance(batch, Mapping):
        return type(batch)({k: _cast(v, dtype) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_cast(v, dtype) for v in batch))
    if isinstance(batch, Sequence) and not isinstance(batch, str | bytes):
        return type(batch)(_cast(v, dtype) for v in batch)  # type: ignore[call-arg]
    return batch


class Precision:
    """The precision named ``name`` on ``device``; see the module docstring for the interface."""

    def __init__(self, name: Any = "32-true", device: torch.device | None = None) -> None:
        self.name = normalize_precision(name)
        self.device = device if device is not None else torch.device("cpu")
        self.dtype: torch.dtype | None = _TRUE_DTYPES.get(self.name)
        self._autocast_dtype: torch.dtype | None = None
        if self.name == "bf16-mixed":
            self._autocast_dtype = torch.bfloat16
        elif self.name == "16-mixed":
            self._autocast_dtype = torch.float16
            if self.device.type == "cpu" and not _cpu_fp16_autocast_works():
                warnings.warn(
                    "precision='16-mixed' is not supported on this CPU by this PyTorch; "
                    "falling back to 'bf16-mixed'",
                    UserWarning,
                    stacklevel=3,
                )
                self.name, self._autocast_dtype = "bf16-mixed", torch.bfloat16
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self._autocast_dtype is torch.float16
        )
        self._scaling = self.scaler.is_enabled()

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(self.dtype) if self.dtype is not None else module

    def convert_input(self, batch: Any) -> Any:
        return _cast(batch, self.dtype) if self.dtype is not None else batch

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        if self._autocast_dtype is None:
            return _NULL_CONTEXT
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if self._scaling:
            loss = self.scaler.scale(loss)
        loss.backward(*args, **kwargs)  # type: ignore[no-untyped-call]

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale ``optimizer``'s gradients (before clipping); idempotent within one step."""
        if self.scaler.is_enabled():
            with contextlib.suppress(RuntimeError):  # already unscaled since the last update
                self.scaler.unscale_(optimizer)

    def optimizer_step(
        self,
        optimizer: torch.optim.Optimizer,
        closure: Callable[[], Any],
        before_step: Callable[[], None],
        **kwargs: Any,
    ) -> Any:
        """Run ``closure`` (forward + backward), ``before_step`` (hooks, clipping), then step."""
        if not self._scaling:
            if not isinstance(optimizer, torch.optim.LBFGS):  # one closure call: run it here
                result = closure()
                before_step()
                optimizer.step(**kwargs)
                return result

            def wrapped() -> Any:  # LBFGS calls the closure several times
                result = closure()
                before_step()
                return result

            return optimizer.step(closure=wrapped, **kwargs)  # type: ignore[no-untyped-call]
        result = closure()  # the scaler cannot step with a closure: run it first
        self.unscale(optimizer)
        before_step()
        self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        return result

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scaler.is_enabled() and state:
            self.scaler.load_state_dict(dict(state))


def _cpu_fp16_autocast_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.ones(1, 1) @ torch.ones(1, 1)
        torch.amp.GradScaler("cpu")
    except (RuntimeError, ValueError, AttributeError):
        return False
    return True
