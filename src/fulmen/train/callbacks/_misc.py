"""The small built-in callbacks: LearningRateMonitor, ModelSummary, GradientAccumulationScheduler,
Timer."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch

from fulmen.train.callback import Callback

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer


class LearningRateMonitor(Callback):
    """Log each optimizer's learning rate (per param group) to the loggers.

    ``logging_interval``: "step", "epoch", or None (each scheduler's own interval). Keys are
    ``lr-<OptimizerClass>`` (``/pg<i>`` per param group when there are several), or the scheduler
    config's ``name``, each after ``log_key_prefix``. ``log_momentum`` adds
    ``<key>-momentum`` (``betas[0]`` for Adam-like optimizers; last values in
    ``last_momentum_values``), ``log_weight_decay`` adds ``<key>-weight_decay``.
    """

    def __init__(
        self,
        logging_interval: str | None = None,
        log_momentum: bool = False,
        log_weight_decay: bool = False,
        log_key_prefix: str = "",
    ) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise ValueError(
                f"LearningRateMonitor(logging_interval={logging_interval!r}) must be None, "
                "'step' or 'epoch'"
            )
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        if not isinstance(log_key_prefix, str):
            raise TypeError(
                f"LearningRateMonitor(log_key_prefix={log_key_prefix!r}) must be a string"
            )
        self.log_key_prefix = log_key_prefix
        self.lrs: dict[str, list[float]] = {}
        self.last_momentum_values: dict[str, float] = {}
        self.last_weight_decay_values: dict[str, float] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.loggers:
            raise ValueError(
                "Cannot use LearningRateMonitor callback with Trainer that has no logger."
            )

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        n = trainer.log_every_n_steps
        if self.logging_interval == "epoch" or not n or (trainer._batches_that_stepped + 1) % n:
            return
        self._log(trainer, "step" if self.logging_interval is None else "any")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch" if self.logging_interval is None else "any")

    def _log(self, trainer: Trainer, interval: str) -> None:
        stats: dict[str, float] = {}
        scheduled = {id(c.scheduler.optimizer): c for c in trainer.lr_scheduler_configs}
        seen: dict[str, int] = {}
        for opt in trainer.optimizers:
            config = scheduled.get(id(opt))
            wanted = config.interval if config is not None else "step"
            if interval not in (wanted, "any"):
                continue
            base = (config.name if config is not None else None) or f"lr-{type(opt).__name__}"
            base = self.log_key_prefix + base
            count = seen.get(base, 0)
            seen[base] = count + 1
            name = base if count == 0 else f"{base}-{count}"
            groups = opt.param_groups
            for i, group in enumerate(groups):
                key = name if len(groups) == 1 else f"{name}/pg{i + 1}"
                stats[key] = float(group["lr"])
                if self.log_momentum:
                    momentum = group.get("momentum", group.get("betas", (0.0,))[0])
                    momentum_key = key.replace(name, f"{name}-momentum", 1)
                    stats[momentum_key] = float(momentum)
                    self.last_momentum_values[momentum_key] = float(momentum)
                if self.log_weight_decay:
                    decay_key = key.replace(name, f"{name}-weight_decay", 1)
                    stats[decay_key] = float(group.get("weight_decay", 0.0))
                    self.last_weight_decay_values[decay_key] = stats[decay_key]
        for key, value in stats.items():
            if key not in self.last_momentum_values and key not in self.last_weight_decay_values:
                self.lrs.setdefault(key, []).append(value)
        if stats:
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=trainer._batches_that_stepped)


def _human(n: float) -> str:
    for unit in ("", "K", "M", "B", "T"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}".rstrip() if unit else f"{int(n)}"
        n /= 1000.0
    return f"{n:.1f} P"


class ModelSummary(Callback):
    """Print a table of the module's layers and parameter counts when fit starts."""

    def __init__(self, max_depth: int = 1) -> None:
        self._max_depth = max_depth

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._max_depth == 0 or not trainer.is_global_zero:
            return
        print(summarize(pl_module, self._max_depth))


def summarize(module: torch.nn.Module, max_depth: int = 1) -> str:
    """The summary table ModelSummary prints."""
    rows = []
    for name, child in module.named_modules():
        depth = name.count(".") + 1
        if not name or (max_depth != -1 and depth > max_depth):
            continue
        params = sum(p.numel() for p in child.parameters())
        rows.append(
            (name, type(child).__name__, _human(params), "train" if child.training else "eval")
        )
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    size_mb = sum(p.numel() * p.element_size() for p in module.parameters()) / 1e6
    head = ("", "Name", "Type", "Params", "Mode")
    table = [head, *((str(i), *row) for i, row in enumerate(rows))]
    widths = [max(len(r[c]) for r in table) for c in range(len(head))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "-" * len(lines[0]))
    lines += [
        "-" * len(lines[0]),
        f"{_human(trainable):<10}Trainable params",
        f"{_human(total - trainable):<10}Non-trainable params",
        f"{_human(total):<10}Total params",
        f"{size_mb:<10.3f}Total estimated model params size (MB)",
    ]
    return "\n".join(lines)


class GradientAccumulationScheduler(Callback):
    """Change ``accumulate_grad_batches`` by epoch: ``scheduling={epoch: factor}``."""

    def __init__(self, scheduling: dict[int, int]) -> None:
        if not scheduling:
            raise TypeError("GradientAccumulationScheduler: scheduling must be a non-empty dict")
        for epoch, factor in scheduling.items():
            if not isinstance(epoch, int) or epoch < 0 or not isinstance(factor, int) or factor < 1:
                raise ValueError(
                    "GradientAccumulationScheduler: scheduling maps epochs (int >= 0) to factors "
                    f"(int >= 1); got {epoch!r}: {factor!r}"
                )
        self.scheduling = dict(sorted(scheduling.items()))
        if 0 not in self.scheduling:
            self.scheduling = {0: 1, **self.scheduling}

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        factor = 1
        for start, value in self.scheduling.items():
            if epoch >= start:
                factor = value
        return factor

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                "GradientAccumulationScheduler does nothing under manual optimization; remove it"
            )

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)


def _parse_duration(duration: Any) -> timedelta | None:
    if duration is None or isinstance(duration, timedelta):
        return duration
    if isinstance(duration, dict):
        return timedelta(**duration)
    if isinstance(duration, str):
        match = re.fullmatch(r"(\d+):(\d\d):(\d\d):(\d\d)", duration.strip())
        if match:
            d, h, m, s = (int(g) for g in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
    raise ValueError(
        f"duration {duration!r}: expected 'DD:HH:MM:SS', a timedelta, or a dict of timedelta "
        "arguments"
    )


class Timer(Callback):
    """Track time per stage; with ``duration``, stop training when it is spent (``max_time``)."""

    def __init__(self, duration: Any = None, interval: str = "step", verbose: bool = True) -> None:
        if interval not in ("step", "epoch"):
            raise ValueError(f"Timer(interval={interval!r}) must be 'step' or 'epoch'")
        parsed = _parse_duration(duration)
        self._duration = parsed.total_seconds() if parsed is not None else None
        self._interval = interval
        self._verbose = verbose
        self._start: dict[str, float | None] = dict.fromkeys(("train", "validate", "test"))
        self._end: dict[str, float | None] = dict.fromkeys(("train", "validate", "test"))
        self._offset = 0.0

    def start_time(self, stage: str = "train") -> float | None:
        return self._start[stage]

    def end_time(self, stage: str = "train") -> float | None:
        return self._end[stage]

    def time_elapsed(self, stage: str = "train") -> float:
        start, end = self._start[stage], self._end[stage]
        offset = self._offset if stage == "train" else 0.0
        if start is None:
            return offset
        return offset + ((end if end is not None else time.monotonic()) - start)

    def time_remaining(self, stage: str = "train") -> float | None:
        return None if self._duration is None else self._duration - self.time_elapsed(stage)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["train"], self._end["train"] = time.monotonic(), None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end["train"] = time.monotonic()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["validate"], self._end["validate"] = time.monotonic(), None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end["validate"] = time.monotonic()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["test"], self._end["test"] = time.monotonic(), None

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end["test"] = time.monotonic()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._interval == "step" and self._duration is not None:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._interval == "epoch" and self._duration is not None:
            self._check(trainer)

    def _check(self, trainer: Trainer) -> None:
        assert self._duration is not None
        spent = self.time_elapsed("train") >= self._duration
        if trainer.strategy.broadcast(spent):
            trainer.should_stop = True
            if self._verbose:
                trainer.print(
                    f"Time limit reached. Elapsed time is "
                    f"{timedelta(seconds=int(self.time_elapsed()))}. Signaling Trainer to stop."
                )

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {s: self.time_elapsed(s) for s in self._start}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = float(state_dict.get("time_elapsed", {}).get("train", 0.0))
