"""What ``self.log`` stores, and how it becomes step and epoch metrics.

One ``_Metric`` per key per stage (train, validate, test). ``self.log`` takes one path,
``Trainer._log``: ``as_value`` (checked, detached) then ``_Metric.update``, which keeps the latest
value as a tensor (no ``.item()``: that would be a device sync
every step) and, for epoch metrics, a running weighted total as tensors too. Values become floats
only when something reads them: the logger every ``log_every_n_steps``, the progress bar, callbacks.

Lightning's per-hook defaults are in ``LOG_DEFAULTS``: (on_step, on_epoch) for hooks that may log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_STEP_HOOKS = (
    "training_step",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "optimizer_step",
    "optimizer_zero_grad",
    "backward",
    "configure_gradient_clipping",
    "clip_gradients",
    "lr_scheduler_step",
)
_EPOCH_HOOKS = (
    "on_train_start",
    "on_train_epoch_start",
    "on_train_epoch_end",
    "on_validation_start",
    "on_validation_epoch_start",
    "on_validation_epoch_end",
    "on_validation_end",
    "validation_step",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_start",
    "on_test_epoch_start",
    "on_test_epoch_end",
    "on_test_end",
    "test_step",
    "on_test_batch_start",
    "on_test_batch_end",
)
# hook -> (default on_step, default on_epoch, on_step allowed)
LOG_DEFAULTS: dict[str, tuple[bool, bool, bool]] = {
    **dict.fromkeys(_STEP_HOOKS, (True, False, True)),
    **{h: (False, True, h.endswith(("_step", "_batch_start", "_batch_end"))) for h in _EPOCH_HOOKS},
}
REDUCE_FX = ("mean", "sum", "max", "min")


class _Metric:
    __slots__ = (
        "batch_size",
        "count",
        "epoch_done",
        "logger",
        "name",
        "obj",
        "on_epoch",
        "on_step",
        "prog_bar",
        "reduce_fx",
        "step_key",
        "sync",
        "synced_epoch",
        "synced_step",
        "total",
        "value",
        "weight",
    )

    def __init__(
        self,
        name: str,
        prog_bar: bool,
        logger: bool,
        on_step: bool,
        on_epoch: bool,
        reduce_fx: str,
        sync: Callable[[torch.Tensor, str], torch.Tensor] | None,
    ) -> None:
        self.name = name
        self.prog_bar = prog_bar
        self.logger = logger
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.reduce_fx = reduce_fx
        self.sync = sync
        self.step_key = name + "_step" if on_epoch else name  # its key in step_metrics
        # sync_dist values, reduced across ranks at the sync points (Results.sync_step and
        # sync_epoch, which every rank reaches together): (count or step value, reduced value).
        self.synced_epoch: tuple[int, float] | None = None
        self.synced_step: tuple[Any, float] | None = None
        self.value: torch.Tensor | float | None = 0.0  # None: a Metric object without forward
        self.total: torch.Tensor | float = 0.0
        self.weight = 0
        self.count = 0
        self.obj: Any = None  # a torchmetrics-style Metric logged as the value
        self.epoch_done = False

    def update(self, value: Any, batch_size: int) -> None:
        # as_value gives a tensor, a float or a Metric object; the attribute probes of
        # _is_metric_object cost about a microsecond on a tensor, so skip them for the common case
        if (
            type(value) is not torch.Tensor
            and type(value) is not float
            and _is_metric_object(value)
        ):  # it accumulates itself: step value = its last forward
            if self.epoch_done:
                self.reset_epoch()
            self.obj, self.value = value, getattr(value, "_forward_cache", None)
            self.count += 1
            return
        self.value = value
        if not self.on_epoch:
            return
        if self.epoch_done:  # first update of a new epoch
            self.reset_epoch()
        fx = self.reduce_fx
        if fx == "mean":
            self.total = self.total + value * batch_size
            self.weight += batch_size
        elif fx == "sum":
            self.total = self.total + value
        elif self.count == 0:
            self.total = value
        elif fx == "max":
            self.total = torch.maximum(torch.as_tensor(self.total), torch.as_tensor(value))
        else:
            self.total = torch.minimum(torch.as_tensor(self.total), torch.as_tensor(value))
        self.count += 1

    def reset_epoch(self) -> None:
        self.total, self.weight, self.count, self.epoch_done = 0.0, 0, 0, False
        self.synced_epoch = None

    def step_value(self) -> float:
        value = self.value
        if value is None:  # a Metric object updated without forward: its value so far
            value = self.obj.compute()
        synced = self.synced_step
        if synced is not None and synced[0] is value:
            return synced[1]
        # Never a collective here: a read between sync points (the progress bar, on rank zero
        # only) would wait forever for the other ranks. It sees this rank's own value.
        if type(value) is torch.Tensor:
            return float(value.item())  # a device sync point for tensors on an accelerator
        return float(value)

    def epoch_value(self) -> float:
        if self.obj is not None:  # after the epoch, the value computed before the reset
            return float(self.total) if self.epoch_done else float(self.obj.compute())
        synced = self.synced_epoch
        if synced is not None and synced[0] == self.count:
            return synced[1]
        if self.reduce_fx == "mean":
            return float(self.total) / max(self.weight, 1)
        return float(self.total)


class Results:
    """All metrics logged in one stage; ``fresh`` holds those updated since the last emission."""

    def __init__(self) -> None:
        self.metrics: dict[str, _Metric] = {}
        self.fresh: dict[str, _Metric] = {}
        # (hook, name as logged, dataloader index) -> metric
        self.cache: dict[tuple[str, str, int | None], _Metric] = {}
        self.syncing = False  # does any metric have sync_dist? (else sync_step has nothing to do)

    def add(self, key: tuple[str, str, int | None], metric: _Metric) -> None:
        """Register the metric of a first ``self.log`` under ``key``."""
        self.cache[key] = metric
        self.metrics[metric.name] = metric
        if metric.sync is not None:
            self.syncing = True

    def reset(self) -> None:
        self.metrics.clear()
        self.fresh.clear()
        self.cache.clear()
        self.syncing = False

    def sync_step(self) -> None:
        """Reduce the fresh ``sync_dist`` step values across ranks (every rank calls this)."""
        todo = [m for m in self.fresh.values() if m.sync is not None and m.on_step]
        if not todo:
            return
        values = []
        for m in todo:
            value = m.value if m.value is not None else m.obj.compute()
            values.append(value)
        reduced = _reduce_grouped(
            todo[0].sync, [(m.reduce_fx, (v,)) for m, v in zip(todo, values, strict=True)]
        )
        for m, v, (out, *_) in zip(todo, values, reduced, strict=True):
            m.synced_step = (v, out)

    def sync_epoch(self) -> None:
        """Reduce every ``sync_dist`` epoch value across ranks, in one collective per reduce op.

        Every rank calls this at the same points (the end of each epoch); the reduced values are
        kept for every later read (callbacks, loggers, the progress bar) until the next update.
        """
        todo = [
            m
            for m in self.metrics.values()
            if m.sync is not None and m.on_epoch and m.count and not m.epoch_done and m.obj is None
        ]
        if not todo:
            return
        requests: list[tuple[str, tuple[Any, ...]]] = []
        for m in todo:
            if m.reduce_fx == "mean":  # sum of the weighted totals / sum of the weights
                requests.append(("sum", (m.total, float(m.weight))))
            else:
                requests.append((m.reduce_fx, (m.total,)))
        for m, parts in zip(todo, _reduce_grouped(todo[0].sync, requests), strict=True):
            value = parts[0] / max(parts[1], 1.0) if m.reduce_fx == "mean" else parts[0]
            m.synced_epoch = (m.count, value)

    def step_metrics(self, *, logger: bool = True) -> dict[str, float]:
        """The fresh step values (``name_step`` when the metric is also an epoch metric)."""
        if self.syncing:
            self.sync_step()
        out: dict[str, float] = {}
        for m in self.fresh.values():
            if m.on_step and (m.logger or not logger):
                out[m.step_key] = m.step_value()
        return out

    def epoch_metrics(self, *, logger: bool = True) -> dict[str, float]:
        """Every epoch value (``name_epoch`` when the metric is also a step metric)."""
        self.sync_epoch()
        out: dict[str, float] = {}
        for m in self.metrics.values():
            if m.on_epoch and m.count and not m.epoch_done and (m.logger or not logger):
                out[m.name + "_epoch" if m.on_step else m.name] = m.epoch_value()
        return out

    def end_epoch(self) -> None:
        for m in self.metrics.values():
            if m.on_epoch:
                m.epoch_done = True
            if m.obj is not None and m.count:
                m.total = float(m.obj.compute())
                m.obj.reset()

    def callback_metrics(self, prog_bar_only: bool = False) -> dict[str, float]:
        """Latest values for callbacks: step values, epoch values, and the plain name."""
        out: dict[str, float] = {}
        for m in self.metrics.values():
            if prog_bar_only and not m.prog_bar:
                continue
            if m.on_step and m.on_epoch:
                step = m.step_value()
                out[m.name + "_step"] = step
                if m.count:
                    out[m.name + "_epoch"] = m.epoch_value()
                    out[m.name] = out[m.name + "_epoch"] if m.epoch_done else step
                else:
                    out[m.name] = step
            elif m.on_step:
                out[m.name] = m.step_value()
            elif m.count:
                out[m.name] = m.epoch_value()
        return out


def _reduce_grouped(
    sync: Any, requests: list[tuple[str, tuple[Any, ...]]]
) -> list[tuple[float, ...]]:
    """Reduce many scalars with one collective per reduce op ("sum", "mean", "max", "min").

    ``requests`` holds (op, scalars) per metric; the answer holds the reduced scalars, in order.
    Each group is stacked into one float64 vector: a single all_reduce instead of one per metric
    (Lightning makes one call per metric and value, slow at epoch end: its issue #17988).
    """
    groups: dict[str, list[Any]] = {}
    where: list[tuple[str, int, int]] = []
    for op, scalars in requests:
        group = groups.setdefault(op, [])
        where.append((op, len(group), len(scalars)))
        group.extend(scalars)
    reduced: dict[str, list[float]] = {}
    for op, group in groups.items():
        stacked = torch.stack(
            [torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(()) for v in group]
        )
        reduced[op] = sync(stacked, op).tolist()  # the collective
    return [tuple(reduced[op][start : start + n]) for op, start, n in where]


def _is_metric_object(value: Any) -> bool:
    return all(callable(getattr(value, a, None)) for a in ("update", "compute", "reset"))


def as_value(name: str, value: Any) -> Any:
    """Validate a logged value: a number, a one-element tensor (detached), or a Metric object
    (torchmetrics-style: ``update``/``compute``/``reset``; its ``compute()`` is the epoch value)."""
    if type(value) is torch.Tensor and value.dim() == 0:  # the usual case, checked first
        # Never the graph: a value kept until it is emitted would keep the step's whole graph
        # alive. (A tensor that requires no grad has none: no need for a new tensor each step.)
        return value.detach() if value.requires_grad else value
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"self.log({name!r}, value): value must be a scalar, got a tensor of shape "
                f"{tuple(value.shape)}"
            )
        detached: torch.Tensor = value.detach()
        return detached.reshape(()) if detached.dim() else detached
    if isinstance(value, bool | int | float):
        return float(value)
    if _is_metric_object(value):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        return float(item())  # a NumPy scalar or similar
    raise TypeError(
        f"self.log({name!r}, value): value must be a number or a scalar tensor, "
        f"got {type(value).__name__}"
    )


_REDUCE_NAMES = {"avg": "mean", "average": "mean", "amax": "max", "amin": "min"}


def parse_reduce_fx(name: str, reduce_fx: Any) -> str:
    """``reduce_fx`` as "mean", "sum", "max" or "min": a name in any case ("MEAN", "avg") or a
    callable of that name (``torch.mean``, ``torch.max``, builtin ``max``, ``np.sum``...)."""
    key = reduce_fx if isinstance(reduce_fx, str) else getattr(reduce_fx, "__name__", None)
    if isinstance(key, str):
        key = key.lower()
        key = _REDUCE_NAMES.get(key, key)
        if key in REDUCE_FX:
            return key
    raise ValueError(  # Lightning's message (a MisconfigurationException there)
        f"self.log({name!r}, ...): Only `self.log(..., reduce_fx={{min,max,mean,sum}})` are "
        "supported. If you need a custom reduction, please log a `torchmetrics.Metric` instance "
        f"instead. Found: {reduce_fx}"
    )


def new_metric(
    results: Results,
    dataloader_idx: int | None,
    sync_fn: Callable[[torch.Tensor, str], torch.Tensor] | None,
    fx: str,
    name: str,
    prog_bar: bool,
    logger: bool | None,
    on_step: bool | None,
    on_epoch: bool | None,
    reduce_fx: Any,
    sync_dist: bool,
    add_dataloader_idx: bool,
) -> _Metric:
    """The metric of a first ``self.log(name, ...)`` in hook ``fx``: defaults and checks."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"self.log(name, ...): name must be a non-empty str, got {name!r}")
    defaults = LOG_DEFAULTS.get(fx)
    if defaults is None:
        raise ValueError(f"You can't `self.log({name!r}, ...)` in `{fx or 'this hook'}`")
    default_step, default_epoch, step_allowed = defaults
    on_step = default_step if on_step is None else on_step
    on_epoch = default_epoch if on_epoch is None else on_epoch
    if on_step and not step_allowed:
        raise ValueError(f"You can't `self.log({name!r}, ..., on_step=True)` in `{fx}`")
    if not (on_step or on_epoch):
        raise ValueError(f"self.log({name!r}, ...): on_step=False and on_epoch=False logs nothing")
    reduce = parse_reduce_fx(name, reduce_fx)
    if dataloader_idx is not None and add_dataloader_idx:
        name = f"{name}/dataloader_idx_{dataloader_idx}"
    existing = results.metrics.get(name)
    if existing is not None and (existing.on_step, existing.on_epoch) != (on_step, on_epoch):
        raise ValueError(
            f"self.log({name!r}, ...) was called in two hooks with different on_step/on_epoch"
        )
    sync = sync_fn if sync_dist else None
    return existing or _Metric(
        name, prog_bar, True if logger is None else logger, on_step, on_epoch, reduce, sync
    )
