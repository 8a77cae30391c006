"""The Tuner: Lightning's learning-rate finder and batch-size scaler.

Each trial trains the user's module for a few steps on a *trial* Trainer built from the user's
settings (device, precision, accumulation, clipping, limits), with no logger, no checkpointing,
no progress bar and only the tuner's own callback. The user's Trainer is never run, so its
callbacks, loggers, global step and optimizers are untouched by construction; the module's
weights, its training mode and attachment, and the datamodule's state are saved before the
trials and put back after them.

    Tuner(trainer).lr_find(model)           -> _LRFinder (.results, .suggestion(), .plot())
    Tuner(trainer).scale_batch_size(model)  -> the largest batch size that fit in memory

The callbacks ``LearningRateFinder`` and ``BatchSizeFinder`` run the same searches when fit
starts, then rebuild the optimizers (new lr) or the dataloaders (new batch size) of the fit.
"""

import copy
import logging
import math
from typing import TYPE_CHECKING, Any

import torch

from fulmen.train.callback import Callback

if TYPE_CHECKING:
    from fulmen.train.module import LightningDataModule, LightningModule
    from fulmen.train.trainer import Trainer

__all__ = ["BatchSizeFinder", "LearningRateFinder", "Tuner"]

log = logging.getLogger("fulmen.train")

_LR_MODES = ("exponential", "linear")
_BATCH_SIZE_MODES = ("power", "binsearch")
_LR_ATTRS = ("lr", "learning_rate")
_OOM_MESSAGES = (
    "CUDA out of memory.",
    "CUDA error: out of memory",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.",
    "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED",
    "DefaultCPUAllocator: can't allocate memory",
    "MPS backend out of memory",
)


# ---------------------------------------------------------------------------- attribute lookup
def _attr_owner(model: "LightningModule", name: str) -> Any:
    """Where ``name`` lives, in Lightning's order: the module, its hparams, the datamodule,
    the datamodule's hparams (None when nowhere)."""
    trainer = model._trainer
    datamodule = trainer.datamodule if trainer is not None else None
    candidates: list[Any] = [model, getattr(model, "hparams", None)]
    if datamodule is not None:
        candidates += [datamodule, getattr(datamodule, "hparams", None)]
    for holder in candidates:
        if holder is None:
            continue
        if isinstance(holder, dict):
            if name in holder:
                return holder
        elif name in vars(holder) or hasattr(type(holder), name):
            return holder
    return None


def _get_attr(holder: Any, name: str) -> Any:
    return holder[name] if isinstance(holder, dict) else getattr(holder, name)


def _set_attr(model: "LightningModule", name: str, value: Any) -> None:
    """Set ``name`` everywhere it is found (module and hparams alike, as Lightning does)."""
    trainer = model._trainer
    datamodule = trainer.datamodule if trainer is not None else None
    holders: list[Any] = [model, getattr(model, "hparams", None)]
    if datamodule is not None:
        holders += [datamodule, getattr(datamodule, "hparams", None)]
    for holder in holders:
        if holder is None:
            continue
        if isinstance(holder, dict):
            if name in holder:
                holder[name] = value
        elif name in vars(holder) or hasattr(type(holder), name):
            setattr(holder, name, value)


def _lr_attr_name(model: "LightningModule", attr_name: str) -> str:
    if attr_name:
        if _attr_owner(model, attr_name) is None:
            raise AttributeError(
                f"The attribute name for the learning rate was set to {attr_name}, but could not "
                "find this as a field in `model` or `model.hparams`."
            )
        return attr_name
    for name in _LR_ATTRS:
        if _attr_owner(model, name) is not None:
            return name
    raise AttributeError(
        "When using the learning rate finder, either `model` or `model.hparams` should have one "
        f"of these fields: {list(_LR_ATTRS)}. If your model has a different name for the "
        "learning rate, set it with `.lr_find(attr_name=...)`."
    )


def is_oom_error(exc: BaseException) -> bool:
    """Is ``exc`` an out-of-memory error of a device (the batch-size scaler halves on these)?"""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MESSAGES)


# ---------------------------------------------------------------------------- trials
class _Saved:
    """What a trial may change, saved before it and put back after it."""

    def __init__(self, model: "LightningModule", datamodule: "LightningDataModule | None") -> None:
        self.model, self.datamodule = model, datamodule
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.training = model.training
        self.trainer = model._trainer
        self.dm_trainer = datamodule.trainer if datamodule is not None else None
        self.dm_state = copy.deepcopy(datamodule.state_dict()) if datamodule is not None else None

    def restore(self) -> None:
        model = self.model
        model.load_state_dict(self.weights)
        model.train(self.training)
        model.trainer = self.trainer
        if self.datamodule is not None:
            self.datamodule.trainer = self.dm_trainer
            if self.dm_state:
                self.datamodule.load_state_dict(self.dm_state)


def _trial_trainer(trainer: "Trainer", callback: Callback | None, **limits: Any) -> "Trainer":
    """A Trainer with ``trainer``'s device, precision and step settings, and nothing that
    writes: no logger, no checkpoint, no progress bar, no summary; ``callback`` only."""
    from fulmen.train.trainer import Trainer

    settings: dict[str, Any] = {
        "strategy": trainer.strategy,
        "precision": trainer.precision,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "gradient_clip_val": trainer.gradient_clip_val,
        "gradient_clip_algorithm": trainer.gradient_clip_algorithm,
        "default_root_dir": trainer.default_root_dir,
        "limit_train_batches": trainer.limit_train_batches,
        "inference_mode": trainer.inference_mode,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "callbacks": [] if callback is None else [callback],
    }
    settings.update(limits)
    return Trainer(**settings)


# ---------------------------------------------------------------------------- lr_find
class _LRFinder:
    """The result of ``Tuner.lr_find``: ``results`` {"lr": [...], "loss": [...]} (smoothed loss
    per step), ``suggestion()`` and ``plot()``."""

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        self.mode = mode
        self.lr_min = lr_min
        self.lr_max = lr_max
        self.num_training = num_training
        self.results: dict[str, list[float]] = {}
        self._optimal_idx: int | None = None

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based) of the sweep."""
        r = step / max(self.num_training - 1, 1)
        if self.mode == "linear":
            return self.lr_min + r * (self.lr_max - self.lr_min)
        return float(self.lr_min * (self.lr_max / self.lr_min) ** r)

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The learning rate where the loss falls fastest (steepest negative gradient), skipping
        ``skip_begin`` points at the start and ``skip_end`` at the end; None (and an error in the
        log) when fewer than two finite points remain."""
        lrs = self.results.get("lr", [])
        losses = self.results.get("loss", [])
        end = len(losses) - skip_end if skip_end > 0 else len(losses)
        kept = [i for i in range(skip_begin, end) if i < len(losses) and math.isfinite(losses[i])]
        if len(kept) < 2:
            log.error(
                "Failed to compute suggestion for learning rate because there are not enough "
                "points. Increase the loop iteration limits or the size of your dataset/dataloader."
            )
            self._optimal_idx = None
            return None
        gradients = torch.gradient(torch.tensor([losses[i] for i in kept], dtype=torch.float64))[0]
        self._optimal_idx = kept[int(torch.argmin(gradients).item())]
        return lrs[self._optimal_idx]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """A matplotlib figure of loss against learning rate (log x-axis for "exponential");
        ``suggest=True`` marks the suggestion with a red dot. Needs matplotlib."""
        import importlib

        try:  # optional: only plot() needs it
            plt = importlib.import_module("matplotlib.pyplot")
        except ImportError as exc:
            raise ModuleNotFoundError(
                "_LRFinder.plot() needs matplotlib, which is not installed: "
                "`pip install matplotlib`"
            ) from exc
        lrs, losses = self.results["lr"], self.results["loss"]
        if ax is None:
            fig, ax = plt.subplots()
        else:
            fig = ax.figure
        ax.plot(lrs, losses)
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest:
            self.suggestion()
            if self._optimal_idx is not None:
                ax.plot(
                    lrs[self._optimal_idx],
                    losses[self._optimal_idx],
                    markersize=10,
                    marker="o",
                    color="red",
                )
        if show:
            plt.show()
        return fig


class _LRSweep(Callback):
    """The trial's callback: sets each step's learning rate, records the smoothed loss, and
    stops when it exceeds ``early_stop_threshold`` times the best seen."""

    def __init__(self, finder: _LRFinder, early_stop_threshold: float | None) -> None:
        self.finder = finder
        self.early_stop_threshold = early_stop_threshold
        self.beta = 0.98  # exponential smoothing of the loss, bias-corrected
        self.avg_loss = 0.0
        self.best_loss = math.inf
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def on_train_start(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        # The sweep replaces the module's own schedulers for the trial (Lightning does too).
        trainer.lr_scheduler_configs = []

    def on_train_batch_start(
        self, trainer: "Trainer", pl_module: "LightningModule", batch: Any, batch_idx: int
    ) -> None:
        lr = self.finder.lr_at(trainer.global_step)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def on_train_batch_end(
        self,
        trainer: "Trainer",
        pl_module: "LightningModule",
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return  # the optimizer steps at the end of the window
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        current = float(loss.item() if isinstance(loss, torch.Tensor) else loss)
        step = len(self.losses)
        self.avg_loss = self.beta * self.avg_loss + (1 - self.beta) * current
        smoothed = self.avg_loss / (1 - self.beta ** (step + 1))
        self.lrs.append(self.finder.lr_at(step))
        self.losses.append(smoothed)
        if (
            self.early_stop_threshold is not None
            and step > 1
            and smoothed > self.early_stop_threshold * self.best_loss
        ):
            trainer.should_stop = True  # the loss diverges: the rest of the sweep says nothing
        if smoothed < self.best_loss or step == 1:
            self.best_loss = smoothed


def _datamodule_of(trainer: "Trainer", datamodule: Any) -> Any:
    return datamodule if datamodule is not None else trainer.datamodule


def _check_single_optimizer(model: "LightningModule") -> None:
    from fulmen.train import _optim

    optimizers, _ = _optim.parse_optimizers(model.configure_optimizers())
    if len(optimizers) > 1:
        raise ValueError(
            f"`model.configure_optimizers()` returned {len(optimizers)}, but learning rate "
            "finder only works with single optimizer"
        )


def lr_find(
    trainer: "Trainer",
    model: "LightningModule",
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    datamodule: Any = None,
    min_lr: float = 1e-8,
    max_lr: float = 1,
    num_training: int = 100,
    mode: str = "exponential",
    early_stop_threshold: float | None = 4.0,
    update_attr: bool = True,
    attr_name: str = "",
) -> _LRFinder | None:
    """Train ``num_training`` steps with the learning rate rising from ``min_lr`` to ``max_lr``
    and return the finder (see ``Tuner.lr_find``)."""
    if mode not in _LR_MODES:
        raise ValueError(f"lr_find(mode={mode!r}) is unknown; `mode` should be one of {_LR_MODES}")
    if not 0 < min_lr < max_lr:
        raise ValueError(f"lr_find(min_lr={min_lr!r}, max_lr={max_lr!r}): need 0 < min_lr < max_lr")
    if num_training < 1:
        raise ValueError(f"lr_find(num_training={num_training!r}) must be >= 1")
    if trainer.fast_dev_run:
        log.warning("Skipping learning rate finder since `fast_dev_run` is enabled.")
        return None
    datamodule = _datamodule_of(trainer, datamodule)
    saved_trainer = model._trainer
    model.trainer = trainer  # the attribute lookup also searches the datamodule
    if datamodule is not None and datamodule.trainer is None:
        datamodule.trainer = trainer
    try:
        lr_attr = _lr_attr_name(model, attr_name) if update_attr else ""
        _check_single_optimizer(model)
    finally:
        model.trainer = saved_trainer
    finder = _LRFinder(mode, min_lr, max_lr, num_training)
    sweep = _LRSweep(finder, early_stop_threshold)
    saved = _Saved(model, datamodule)
    trial = _trial_trainer(
        trainer, sweep, max_steps=num_training, max_epochs=-1, min_epochs=0, limit_val_batches=0
    )
    try:
        if datamodule is not None and train_dataloaders is None:
            trial.fit(model, datamodule=datamodule)
        else:
            trial.fit(model, train_dataloaders, val_dataloaders)
    finally:
        saved.restore()
    finder.results = {"lr": sweep.lrs, "loss": sweep.losses}
    if trial.global_step < num_training:
        log.info("LR finder stopped early after %d steps due to diverging loss.", trial.global_step)
    if update_attr:
        lr = finder.suggestion()
        if lr is not None:
            _set_attr_on(model, trainer, datamodule, lr_attr, lr)
            log.info("Learning rate set to %s", lr)
    return finder


def _set_attr_on(
    model: "LightningModule", trainer: "Trainer", datamodule: Any, name: str, value: Any
) -> None:
    saved_trainer, saved_dm = model._trainer, trainer.datamodule
    model.trainer = trainer
    trainer.datamodule = datamodule
    try:
        _set_attr(model, name, value)
    finally:
        model.trainer, trainer.datamodule = saved_trainer, saved_dm


# ---------------------------------------------------------------------------- scale_batch_size
def _dataset_length(model: "LightningModule", datamodule: Any, method: str) -> int | None:
    """The length of the dataset the trials draw from (a batch never needs to be larger)."""
    name = {"fit": "train_dataloader", "validate": "val_dataloader"}.get(
        method, f"{method}_dataloader"
    )
    source = datamodule if datamodule is not None else model
    try:
        loader = getattr(source, name)()
    except Exception:  # no such loader yet (setup not run): no cap
        return None
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def scale_batch_size(  # noqa: PLR0915  (Lightning's arguments, checked one by one)
    trainer: "Trainer",
    model: "LightningModule",
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    dataloaders: Any = None,
    datamodule: Any = None,
    method: str = "fit",
    mode: str = "power",
    steps_per_trial: int = 3,
    init_val: int = 2,
    max_trials: int = 25,
    batch_arg_name: str = "batch_size",
) -> int | None:
    """Grow the batch size (``batch_arg_name`` of the module, its hparams or the datamodule)
    until a trial runs out of memory; return the largest that fit (see ``Tuner``)."""
    if mode not in _BATCH_SIZE_MODES:
        raise ValueError(f"`mode` should be either of {_BATCH_SIZE_MODES}, got {mode!r}")
    if method not in ("fit", "validate", "test", "predict"):
        raise ValueError(
            f"scale_batch_size(method={method!r}) is unknown; "
            "choose 'fit', 'validate', 'test' or 'predict'"
        )
    if train_dataloaders is not None or val_dataloaders is not None or dataloaders is not None:
        raise ValueError(
            "The batch scaling feature cannot be used with dataloaders passed directly to "
            f"`.{method}()`. Please disable the feature or incorporate the dataloader into your "
            "LightningModule or LightningDataModule."
        )
    for argument, value in (
        ("steps_per_trial", steps_per_trial),
        ("init_val", init_val),
        ("max_trials", max_trials),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"scale_batch_size({argument}={value!r}) must be an int >= 1")
    if trainer.fast_dev_run:
        log.warning("Skipping batch size scaler since `fast_dev_run` is enabled.")
        return None
    if trainer.world_size > 1:
        raise ValueError(
            "Tuning the batch size is currently not supported with distributed strategies."
        )
    datamodule = _datamodule_of(trainer, datamodule)
    saved_trainer, saved_dm = model._trainer, trainer.datamodule
    model.trainer, trainer.datamodule = trainer, datamodule
    try:
        if _attr_owner(model, batch_arg_name) is None:
            raise AttributeError(
                f"Field {batch_arg_name} not found in `model`, `datamodule`, nor their "
                "`hparams` attributes."
            )
    finally:
        model.trainer, trainer.datamodule = saved_trainer, saved_dm
    saved = _Saved(model, datamodule)

    def set_size(size: int) -> None:
        _set_attr_on(model, trainer, datamodule, batch_arg_name, size)

    def trial(size: int) -> None:
        set_size(size)
        limits: dict[str, Any] = {"max_epochs": -1}
        if method == "fit":
            limits.update(max_steps=steps_per_trial, limit_val_batches=steps_per_trial)
        else:
            limits[f"limit_{'val' if method == 'validate' else method}_batches"] = steps_per_trial
        runner = _trial_trainer(trainer, None, **limits)
        try:
            if method == "fit":
                runner.fit(model, datamodule=datamodule)
            elif method == "predict":
                runner.predict(model, datamodule=datamodule, return_predictions=False)
            else:
                getattr(runner, method)(model, datamodule=datamodule, verbose=False)
        finally:
            saved.restore()

    def cap(size: int) -> int:
        length = _dataset_length(model, datamodule, method)
        return size if length is None else min(size, max(length, 1))

    def ran(size: int) -> bool:
        try:
            trial(size)
        except Exception as exc:
            if not is_oom_error(exc):
                raise
            _free_device_memory()
            return False
        return True

    size = init_val
    if mode == "power":
        size = _power_search(size, max_trials, ran, cap)
    else:
        size = _binary_search(size, max_trials, ran, cap)
    set_size(size)
    log.info("Finished batch size finder, will continue with full run using batch size %d", size)
    return size


def _power_search(size: int, max_trials: int, ran: Any, cap: Any) -> int:
    last_good: int | None = None
    for _ in range(max_trials):
        if ran(size):
            last_good = size
            new = cap(size * 2)
            log.info("Batch size %d succeeded, trying batch size %d", size, new)
            if new == size:
                break
            size = new
        else:
            new = max(size // 2, 1)
            log.info("Batch size %d failed, trying batch size %d", size, new)
            size = new
            if last_good is not None or size == 1:
                break
    return last_good if last_good is not None else size


def _binary_search(size: int, max_trials: int, ran: Any, cap: Any) -> int:
    low, high = 1, None
    last_good: int | None = None
    count = 0
    while True:
        if ran(size):
            count += 1
            last_good = low = size
            if count > max_trials:
                break
            if high is not None:
                if high - low <= 1:
                    break
                new = (high + low) // 2
            else:
                new = cap(size * 2)
                if new == size:
                    break
            log.info("Batch size %d succeeded, trying batch size %d", size, new)
            size = new
        else:
            high = size
            new = (high + low) // 2
            log.info("Batch size %d failed, trying batch size %d", size, new)
            size = new
            if high - low <= 1:
                break
    return last_good if last_good is not None else size


def _free_device_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- the Tuner
class Tuner:
    """``Tuner(trainer)``: find a learning rate (``lr_find``) or the largest batch size that fits
    (``scale_batch_size``) before ``trainer.fit``, as Lightning's ``pl.tuner.Tuner``."""

    def __init__(self, trainer: "Trainer") -> None:
        self._trainer = trainer

    def lr_find(
        self,
        model: "LightningModule",
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        method: str = "fit",
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> _LRFinder | None:
        """Sweep the learning rate over ``num_training`` steps (exponentially or linearly from
        ``min_lr`` to ``max_lr``), stop early when the loss exceeds ``early_stop_threshold``
        times its best, and (``update_attr``) set the suggestion on the module's ``lr`` or
        ``learning_rate`` (or ``attr_name``). Returns the finder."""
        if method != "fit":
            raise ValueError("method='fit' is the only valid configuration to run lr finder.")
        if dataloaders is not None:
            raise ValueError("lr_find(dataloaders=...) is for evaluation; pass train_dataloaders")
        return lr_find(
            self._trainer,
            model,
            train_dataloaders,
            val_dataloaders,
            datamodule,
            min_lr,
            max_lr,
            num_training,
            mode,
            early_stop_threshold,
            update_attr,
            attr_name,
        )

    def scale_batch_size(
        self,
        model: "LightningModule",
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        method: str = "fit",
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
    ) -> int | None:
        """Run ``steps_per_trial`` steps at growing batch sizes (``mode="power"``: doubling until
        out of memory; ``"binsearch"``: then bisecting), set the largest that fit on
        ``batch_arg_name`` and return it."""
        return scale_batch_size(
            self._trainer,
            model,
            train_dataloaders,
            val_dataloaders,
            dataloaders,
            datamodule,
            method,
            mode,
            steps_per_trial,
            init_val,
            max_trials,
            batch_arg_name,
        )


# ---------------------------------------------------------------------------- the callbacks
class LearningRateFinder(Callback):
    """Run the learning-rate finder when fit starts, set the suggestion on the module and
    rebuild the fit's optimizers with it. ``optimal_lr`` holds the finder."""

    def __init__(
        self,
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> None:
        if mode not in _LR_MODES:
            raise ValueError(
                f"LearningRateFinder(mode={mode!r}): `mode` should be one of {_LR_MODES}"
            )
        self._min_lr = min_lr
        self._max_lr = max_lr
        self._num_training_steps = num_training_steps
        self._mode = mode
        self._early_stop_threshold = early_stop_threshold
        self._update_attr = update_attr
        self._attr_name = attr_name
        self.optimal_lr: _LRFinder | None = None

    def lr_find(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        """Run the sweep (overridable, as in Lightning, to run it at another hook)."""
        self.optimal_lr = lr_find(
            trainer,
            pl_module,
            trainer._train_given,
            None,
            trainer.datamodule,
            self._min_lr,
            self._max_lr,
            self._num_training_steps,
            self._mode,
            self._early_stop_threshold,
            self._update_attr,
            self._attr_name,
        )
        if self._update_attr:  # the fit's optimizers were built with the old learning rate
            from fulmen.train import _optim

            _optim.configure_optimizers(trainer, pl_module)

    def on_fit_start(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        self.lr_find(trainer, pl_module)


class BatchSizeFinder(Callback):
    """Scale the batch size when fit starts (as ``Tuner.scale_batch_size``) and reload the
    fit's dataloaders with it. ``optimal_batch_size`` holds the result."""

    def __init__(
        self,
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
    ) -> None:
        if mode not in _BATCH_SIZE_MODES:
            raise ValueError(f"`mode` should be either of {_BATCH_SIZE_MODES}, got {mode!r}")
        self._mode = mode
        self._steps_per_trial = steps_per_trial
        self._init_val = init_val
        self._max_trials = max_trials
        self._batch_arg_name = batch_arg_name
        self.optimal_batch_size: int | None = init_val

    def scale_batch_size(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        """Run the search (overridable, as in Lightning)."""
        from fulmen.train import _data

        if trainer._train_given is not None:
            raise ValueError(
                "The batch scaling feature cannot be used with dataloaders passed directly to "
                "`.fit()`. Please disable the feature or incorporate the dataloader into your "
                "LightningModule or LightningDataModule."
            )
        self.optimal_batch_size = scale_batch_size(
            trainer,
            pl_module,
            datamodule=trainer.datamodule,
            mode=self._mode,
            steps_per_trial=self._steps_per_trial,
            init_val=self._init_val,
            max_trials=self._max_trials,
            batch_arg_name=self._batch_arg_name,
        )
        _data.load_train_dataloader(trainer)  # the fit's loaders, at the new batch size
        _data.load_val_dataloaders(trainer)

    def on_fit_start(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        self.scale_batch_size(trainer, pl_module)
