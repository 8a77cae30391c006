"""``configure_optimizers``' return value, in every Lightning form, made into one shape.

Accepted: an optimizer; a list/tuple of optimizers; ``([optimizers], [schedulers])``; a dict
``{"optimizer": opt, "lr_scheduler": scheduler | {"scheduler", "interval", "frequency", "monitor",
"strict", "name"}}`` (also ``"monitor"`` at the top level); a list of such dicts; None (no
optimizer: the loop runs without stepping, with a warning). Anything else is an error that shows
what was returned.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer

_SCHEDULER_KEYS = {
    "scheduler",
    "interval",
    "frequency",
    "monitor",
    "strict",
    "name",
    "reduce_on_plateau",
}


@dataclass
class LRSchedulerConfig:
    """One scheduler and when it steps."""

    scheduler: Any
    name: str | None = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: str | None = None
    strict: bool = True


def _is_optimizer(value: Any) -> bool:
    return isinstance(value, torch.optim.Optimizer)


def _scheduler_config(value: Any, monitor: str | None) -> LRSchedulerConfig:
    plateau_type = torch.optim.lr_scheduler.ReduceLROnPlateau
    if isinstance(value, Mapping):
        extra = set(value) - _SCHEDULER_KEYS
        if "scheduler" not in value or extra:
            raise ValueError(
                "configure_optimizers: an lr_scheduler dict needs a 'scheduler' key and may have "
                f"{sorted(_SCHEDULER_KEYS - {'reduce_on_plateau'})}; got keys {sorted(value)}"
            )
        interval = value.get("interval", "epoch")
        if interval not in ("step", "epoch"):
            raise ValueError(
                f"configure_optimizers: lr_scheduler 'interval' must be 'step' or 'epoch', "
                f"got {interval!r}"
            )
        config = LRSchedulerConfig(
            scheduler=value["scheduler"],
            name=value.get("name"),
            interval=interval,
            frequency=int(value.get("frequency", 1)),
            monitor=value.get("monitor", monitor),
            strict=bool(value.get("strict", True)),
        )
    else:
        config = LRSchedulerConfig(scheduler=value, monitor=monitor)
    config.reduce_on_plateau = isinstance(config.scheduler, plateau_type)
    if config.reduce_on_plateau and config.monitor is None:
        raise ValueError(
            "configure_optimizers: ReduceLROnPlateau needs a metric to monitor: return "
            '{"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}'
        )
    if not hasattr(config.scheduler, "step"):
        raise TypeError(
            f"configure_optimizers: {type(config.scheduler).__name__} is not a scheduler "
            "(it has no step method)"
        )
    return config


def parse_optimizers(returned: Any) -> tuple[list[torch.optim.Optimizer], list[LRSchedulerConfig]]:
    """Optimizers and scheduler configs from whatever ``configure_optimizers`` returned."""
    shown = f"{type(returned).__name__} {returned!r}"[:200]
    if returned is None:
        warnings.warn(
            "configure_optimizers returned None: training runs without an optimizer",
            UserWarning,
            stacklevel=4,
        )
        return [], []
    if _is_optimizer(returned):
        return [returned], []
    if isinstance(returned, Mapping):
        returned = [returned]
    if isinstance(returned, list | tuple):
        items = list(returned)
        if items and all(isinstance(d, Mapping) for d in items):
            optimizers, schedulers = [], []
            for d in items:
                if not _is_optimizer(d.get("optimizer")):
                    raise ValueError(
                        "configure_optimizers: a returned dict needs an 'optimizer' key holding a "
                        f"torch.optim.Optimizer; got {shown}"
                    )
                unknown = set(d) - {"optimizer", "lr_scheduler", "monitor"}
                if unknown:
                    raise ValueError(
                        f"configure_optimizers: unknown keys {sorted(unknown)} in the returned "
                        "dict; allowed: optimizer, lr_scheduler, monitor"
                    )
                optimizers.append(d["optimizer"])
                if d.get("lr_scheduler") is not None:
                    schedulers.append(_scheduler_config(d["lr_scheduler"], d.get("monitor")))
            return optimizers, schedulers
        if (
            len(items) == 2
            and isinstance(items[0], list | tuple)
            and all(_is_optimizer(o) for o in items[0])
        ):
            scheds = items[1] if isinstance(items[1], list | tuple) else [items[1]]
            return list(items[0]), [_scheduler_config(s, None) for s in scheds]
        if items and all(_is_optimizer(o) for o in items):
            return items, []
    raise ValueError(
        "configure_optimizers must return an optimizer, a list of optimizers, "
        "(optimizers, schedulers), or a dict {'optimizer': ..., 'lr_scheduler': ...}; "
        f"got {shown}"
    )


class LightningOptimizer:
    """The optimizer as the module sees it: ``step`` goes through the precision and counts steps.

    Attribute access that is not ``step``/``zero_grad`` reaches the wrapped optimizer
    (``param_groups``, ``state``, ``state_dict``...), as in Lightning.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, trainer: Trainer) -> None:
        self.optimizer = optimizer
        self._trainer = trainer
        self._on_before_step: Callable[[], None] = lambda: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """Step through the precision plugin (scaler, hooks, clipping); counts a global step."""
        trainer = self._trainer
        if closure is None:
            closure = _no_closure
        result = trainer.precision_plugin.optimizer_step(
            self.optimizer, closure, self._on_before_step, **kwargs
        )
        trainer.global_step += 1
        return result


def _no_closure() -> None:
    return None


def configure_optimizers(trainer: Trainer, module: LightningModule) -> None:
    """Check the module, call its configure_optimizers, wrap the optimizers for the loop."""
    from fulmen.train._hooks import is_overridden
    from fulmen.train.module import LightningModule

    if not is_overridden("training_step", module, LightningModule):
        raise NotImplementedError(
            f"{type(module).__qualname__} has no training_step; fit needs "
            "training_step(trainer, batch, batch_idx) returning the loss"
        )
    if not is_overridden("configure_optimizers", module, LightningModule):
        raise NotImplementedError(
            f"{type(module).__qualname__} has no configure_optimizers; fit needs it to return "
            "an optimizer (or a list, (optimizers, schedulers), or a dict)"
        )
    trainer._fx = "configure_optimizers"
    trainer.optimizers, trainer.lr_scheduler_configs = parse_optimizers(
        module.configure_optimizers()
    )
    if module.automatic_optimization and len(trainer.optimizers) > 1:
        raise ValueError(
            f"{type(module).__qualname__}.configure_optimizers returned "
            f"{len(trainer.optimizers)} optimizers; automatic optimization supports one. Set "
            "trainer.automatic_optimization = False and step them in training_step"
        )
    if not module.automatic_optimization and (
        trainer.gradient_clip_val or trainer.accumulate_grad_batches > 1
    ):
        raise ValueError(
            "gradient_clip_val and accumulate_grad_batches do nothing under manual "
            "optimization: call self.clip_gradients(...) and step every N batches yourself"
        )
    trainer._steps_schedulers = any(c.interval == "step" for c in trainer.lr_scheduler_configs)
    trainer._custom_clipping = is_overridden("configure_gradient_clipping", module, LightningModule)
    trainer._lightning_optimizers = []
    for opt in trainer.optimizers:
        lo = LightningOptimizer(opt, trainer)
        clip = module.automatic_optimization
        lo._on_before_step = functools.partial(trainer._before_optimizer_step, lo, clip)
        trainer._lightning_optimizers.append(lo)


def step_schedulers(trainer: Trainer, interval: str) -> None:
    """Step the lr schedulers of ``interval`` ("step" or "epoch") that are due."""
    module = trainer.lightning_module
    assert module is not None
    if not module.automatic_optimization:
        return  # manual optimization steps its schedulers itself
    for config in trainer.lr_scheduler_configs:
        if config.interval != interval:
            continue
        index = trainer._batches_that_stepped if interval == "step" else trainer.current_epoch
        if (index + 1) % config.frequency != 0:
            continue
        metric = None
        if config.reduce_on_plateau:
            metrics = trainer.callback_metrics
            if config.monitor not in metrics:
                if config.strict:
                    raise KeyError(
                        f"ReduceLROnPlateau conditioned on metric {config.monitor!r} which is "
                        f"not available. Available metrics are: {sorted(metrics)}. Log it "
                        "with trainer.log, or set 'strict': False"
                    )
                warnings.warn(
                    f"ReduceLROnPlateau: metric {config.monitor!r} is not available; "
                    "skipping the scheduler step",
                    UserWarning,
                    stacklevel=2,
                )
                continue
            metric = metrics[config.monitor]
        trainer._fx = "lr_scheduler_step"
        module.lr_scheduler_step(config.scheduler, metric)


def loss_of(output: Any) -> torch.Tensor | None:
    """The loss in a training_step's return value (a tensor, a dict with "loss", or None)."""
    if type(output) is torch.Tensor and output.requires_grad:  # the common case, checked first
        return output
    if output is None:
        return None
    if isinstance(output, torch.Tensor):
        loss = output
    elif isinstance(output, dict) and "loss" in output:
        loss = output["loss"]
    else:
        raise ValueError(
            "training_step must return a loss tensor, a dict with a 'loss' key, or None; got "
            f"{type(output).__name__}"
            + (f" with keys {sorted(output)}" if isinstance(output, dict) else "")
        )
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise ValueError(
            "training_step returned a loss that does not require grad (is it detached, or "
            "computed under no_grad?)"
        )
    return loss
