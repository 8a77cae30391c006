"""The Trainer: Lightning's ``fit``/``validate``/``test``/``predict`` as one readable loop.

The loop, as the code runs it (hooks in the order they fire; "event X" calls the callbacks'
``X`` then the module's, except ``on_train_epoch_end`` where the module goes first so that
what it logs is seen by ModelCheckpoint and EarlyStopping)::

    fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path):
        strategy.launch                      (DDP: start or join the other processes; all of
                                              what follows runs in each of them)
        load the checkpoint (if ckpt_path) and hand each logger its "loggers" entry
        move the module to the device, convert it to the precision
        configure_callbacks                  (the module's callbacks join the Trainer's)
        prepare_data                         (datamodule, then module; on local rank zero, or
                                              global rank zero when prepare_data_per_node is
                                              False; the others wait at a barrier)
        setup(stage="fit")                   (datamodule, callbacks, then module)
        configure_model
        load the dataloaders                 (train_dataloader, val_dataloader)
        configure_optimizers
        restore from the checkpoint          (weights, optimizers, schedulers, scaler, callbacks,
                                              loop position)
        log_hyperparams                      (each logger, once)
        event on_fit_start
        event on_sanity_check_start, validation loop on num_sanity_val_steps batches,
              event on_sanity_check_end      (nothing is logged)
        restore the RNG states               (if resuming)
        event on_train_start
        while not (max_epochs or max_steps reached, or should_stop after min_epochs/min_steps):
            event on_train_epoch_start
            for batch_idx, batch in train_dataloader (skipping those done before a mid-epoch
                                                      checkpoint, up to limit_train_batches):
                batch to device                  (on_before_batch_transfer,
                                                  transfer_batch_to_device,
                                                  on_after_batch_transfer, when overridden)
                event on_train_batch_start       (the module's returning -1 ends the epoch)
                automatic optimization:
                    closure = training_step      (in the precision's forward context)
                              [first batch of an accumulation window:
                                  event on_before_zero_grad, optimizer_zero_grad]
                              event on_before_backward, backward(loss / accumulate),
                              event on_after_backward
                    last batch of a window (or of the epoch):
                        optimizer_step(epoch, batch_idx, optimizer, closure):
                            closure(), event on_before_optimizer_step,
                            configure_gradient_clipping, optimizer.step()
                        step-interval lr schedulers
                    else: closure()
                manual optimization: training_step (it calls manual_backward and opt.step())
                event on_train_batch_end
                log step metrics                 (every log_every_n_steps optimizer steps)
                validation loop                  (when val_check_interval says so)
                stop if should_stop or max_steps reached
            epoch-interval lr schedulers         (ReduceLROnPlateau with its monitor)
            event on_train_epoch_end             (module first; ModelCheckpoint saves here)
            log epoch metrics
            current_epoch += 1
        event on_train_end
        event on_fit_end
        teardown("fit")                      (datamodule, callbacks, module), loggers finalized

    validation loop (also validate/test with test hooks):
        event on_validation_start, event on_validation_epoch_start
        for each dataloader, for batch_idx, batch (up to limit_val_batches):
            event on_validation_batch_start, validation_step, event on_validation_batch_end
        event on_validation_epoch_end
        log epoch metrics
        event on_validation_end              (ModelCheckpoint and EarlyStopping act here)

    predict: event on_predict_start, on_predict_epoch_start, per batch on_predict_batch_start,
             predict_step, on_predict_batch_end; on_predict_epoch_end, on_predict_end.

On an exception (KeyboardInterrupt included): every callback's ``on_exception``, then teardown,
then the loggers are finalized with "interrupted" (Ctrl-C) or "failed". Ctrl-C then exits with
status 1 after this graceful shutdown, as Lightning does; other exceptions propagate.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import warnings
from collections.abc import Callable
from typing import Any

import torch

from fulmen.train import _checkpoint, _data, _evaluation, _optim, _paths
from fulmen.train._data import (
    batch_transfer,
    extract_batch_size,
)
from fulmen.train._data import identity_transfer as _identity_transfer
from fulmen.train._hooks import Hooks
from fulmen.train._optim import LightningOptimizer, LRSchedulerConfig
from fulmen.train._results import Results, as_value, new_metric
from fulmen.train.callback import Callback
from fulmen.train.callbacks._defaults import checkpoints_last, default_callbacks
from fulmen.train.loggers import Logger, resolve_loggers
from fulmen.train.module import LightningDataModule, LightningModule
from fulmen.train.precision import Precision
from fulmen.train.states import RunningStage, TrainerFn, TrainerState, TrainerStatus
from fulmen.train.strategy import Strategy, resolve_strategy
from fulmen.train.utilities import MisconfigurationException, PossibleUserWarning, rank_zero_warn

__all__ = ["Trainer"]


@dataclasses.dataclass
class LoopState:
    """Where the fit loop stands: what a checkpoint's ``loops["fit_loop"]`` holds."""

    epoch: int = 0
    global_step: int = 0
    batches_that_stepped: int = 0
    batch_in_epoch: int = 0
    epoch_done: bool = False


def _check_limits(
    max_epochs: Any, max_steps: Any, check_val_every_n_epoch: Any, gradient_clip_val: Any
) -> None:
    """Lightning's checks of these Trainer arguments, with its messages."""
    if max_epochs is not None and max_epochs < -1:
        raise MisconfigurationException(
            f"`max_epochs` must be a non-negative integer or -1. You passed in {max_epochs}."
        )
    if max_steps < -1:
        raise MisconfigurationException(
            f"`max_steps` must be a non-negative integer or -1. You passed in {max_steps}."
        )
    if check_val_every_n_epoch is not None and (
        not isinstance(check_val_every_n_epoch, int) or isinstance(check_val_every_n_epoch, bool)
    ):
        raise MisconfigurationException(
            f"`check_val_every_n_epoch` should be an integer, found {check_val_every_n_epoch!r}."
        )
    if gradient_clip_val is not None and (
        not isinstance(gradient_clip_val, int | float) or isinstance(gradient_clip_val, bool)
    ):
        raise TypeError(
            f"`gradient_clip_val` should be an int or a float. Got {gradient_clip_val}."
        )


class Trainer:
    """Train, validate, test and predict with a LightningModule (Lightning 2.x arguments)."""

    def __init__(  # noqa: PLR0912, PLR0915  (Lightning's arguments, checked one by one)
        self,
        *,
        accelerator: str = "auto",
        strategy: str | Strategy = "auto",
        devices: int | str | list[int] = "auto",
        num_nodes: int = 1,
        precision: int | str | None = None,
        logger: Any = None,
        callbacks: list[Callback] | Callback | None = None,
        fast_dev_run: int | bool = False,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = -1,
        min_steps: int | None = None,
        max_time: Any = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        overfit_batches: int | float = 0.0,
        val_check_interval: int | float | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        benchmark: bool | None = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        profiler: Any = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: Any = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        # First: a DDP strategy sets the rank that loggers and rank_zero_only read.
        self.strategy: Strategy = resolve_strategy(
            strategy, accelerator, devices, num_nodes, use_distributed_sampler
        )
        self.precision_plugin = Precision(
            "32-true" if precision is None else precision, self.strategy.root_device
        )
        if accumulate_grad_batches < 1:
            raise ValueError(
                f"Trainer(accumulate_grad_batches={accumulate_grad_batches!r}) must be >= 1"
            )
        _check_limits(max_epochs, max_steps, check_val_every_n_epoch, gradient_clip_val)
        if gradient_clip_algorithm is not None:
            gradient_clip_algorithm = gradient_clip_algorithm.lower()
            if gradient_clip_algorithm not in ("norm", "value"):
                raise MisconfigurationException(
                    f"`gradient_clip_algorithm` {gradient_clip_algorithm} is invalid. Allowed "
                    "algorithms: ['value', 'norm']."
                )
        self.default_root_dir = _paths.expand(default_root_dir or os.getcwd())
        self.fast_dev_run = fast_dev_run
        dev_batches = int(fast_dev_run) if fast_dev_run else 0
        if dev_batches:
            max_steps, max_epochs, num_sanity_val_steps = dev_batches, 1, 0
            limit_train_batches = limit_val_batches = dev_batches
            limit_test_batches = limit_predict_batches = dev_batches
            val_check_interval = 1.0
        if barebones:
            for argument, value in (
                ("enable_checkpointing", enable_checkpointing),
                ("enable_progress_bar", enable_progress_bar),
                ("enable_model_summary", enable_model_summary),
            ):
                if value:
                    raise ValueError(f"Trainer(barebones=True) cannot be used with {argument}=True")
            if logger not in (None, False):
                raise ValueError("Trainer(barebones=True) cannot be used with a logger")
            logger, enable_checkpointing = False, False
            enable_progress_bar, enable_model_summary = False, False
            log_every_n_steps = 0
        # max_epochs=None: 1000 epochs, or no limit when max_steps or a time limit stops the fit;
        # fit() decides (it sees the callbacks) and warns, as Lightning does.
        self._max_epochs_unset = max_epochs is None
        if max_epochs is None:
            max_epochs = 1000 if max_steps == -1 and max_time is None else -1
        self.max_epochs: int = max_epochs
        self.min_epochs = min_epochs or 0
        self.max_steps = max_steps
        self.min_steps = min_steps or 0
        self.max_time = max_time
        if overfit_batches:
            limit_train_batches = limit_val_batches = overfit_batches
        self.overfit_batches = overfit_batches
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.limit_test_batches = limit_test_batches
        self.limit_predict_batches = limit_predict_batches
        self.val_check_interval: int | float = (
            1.0 if val_check_interval is None else val_check_interval
        )
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = 2 if num_sanity_val_steps is None else num_sanity_val_steps
        self.log_every_n_steps = 50 if log_every_n_steps is None else log_every_n_steps
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.inference_mode = inference_mode
        self.use_distributed_sampler = use_distributed_sampler
        self.reload_dataloaders_every_n_epochs = reload_dataloaders_every_n_epochs
        self.detect_anomaly = detect_anomaly
        self.barebones = barebones
        for argument, value, default in (
            ("profiler", profiler, None),
            ("plugins", plugins, None),
            ("sync_batchnorm", sync_batchnorm, False),
        ):
            if value != default:
                warnings.warn(
                    f"Trainer({argument}={value!r}) is accepted for compatibility but does "
                    "nothing in this version of fulmen",
                    UserWarning,
                    stacklevel=2,
                )
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=deterministic == "warn")
        if benchmark is not None:
            torch.backends.cudnn.benchmark = benchmark

        self.loggers: list[Logger] = resolve_loggers(logger, self.default_root_dir, dev_batches)
        self.callbacks: list[Callback] = default_callbacks(
            callbacks,
            self.max_time,
            self.accumulate_grad_batches,
            enable_checkpointing is not False and not dev_batches,
            enable_progress_bar is not False,
            enable_model_summary is not False and not dev_batches,
        )

        # run state
        self.lightning_module: LightningModule = None  # type: ignore[assignment]  # set by each run
        self.datamodule: LightningDataModule | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self._lightning_optimizers: list[LightningOptimizer] = []
        self.lr_scheduler_configs: list[LRSchedulerConfig] = []
        self.current_epoch = 0
        self.global_step = 0
        self.should_stop = False
        self.ckpt_path: str | None = None  # the checkpoint the running/last entry point loaded
        # status, entry point (fn) and running loop (stage), with Lightning's enums
        self.state = TrainerState()
        self.train_dataloader: Any = None
        self.val_dataloaders: Any = None
        self.test_dataloaders: Any = None
        self.predict_dataloaders: Any = None
        self.num_training_batches: float = math.inf
        self.num_val_batches: list[float] = []
        self.num_test_batches: list[float] = []
        self.num_predict_batches: list[float] = []
        self.num_sanity_val_batches: list[float] = []
        self._batches_that_stepped = 0
        self._batch_in_epoch = 0
        self._epoch_done = False
        self._resume_batches = 0
        self._hooks = Hooks(self)  # who overrides which hook; calls them
        self._steps_schedulers = False  # any lr scheduler with interval "step"?
        self._custom_clipping = False  # does the module override configure_gradient_clipping?
        # the training step of this epoch: _automatic_step or _manual_step (chosen at its start)
        self._train_step: Callable[[LightningModule, Any, int, bool], Any] = self._automatic_step
        self._fx = ""
        self._results = self._train_results = Results()
        self._eval_results = Results()
        self._logged_metrics: dict[str, float] = {}
        self._dataloader_idx: int | None = None
        self._train_given: Any = None  # the train_dataloaders given to fit (for reloading)
        self._val_check_batch = math.inf  # validate every this many training batches
        self._batch: Any = None
        self._batch_size: int | None = None
        self._to_device: Callable[[Any, int], Any] = _identity_transfer

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> torch.nn.Module | None:
        return self.lightning_module

    @property
    def logger(self) -> Logger | None:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Logger | None) -> None:
        self.loggers = [] if logger is None else [logger]

    @property
    def log_dir(self) -> str:
        """The first logger's ``log_dir`` (``save_dir`` when it has none), else default_root_dir."""
        if self.loggers:
            first = self.loggers[0]
            path = first.log_dir or first.save_dir
            if path is not None:
                return str(self.strategy.broadcast(path))
        return self.default_root_dir

    @property
    def checkpoint_callbacks(self) -> list[Any]:
        from fulmen.train.callbacks import ModelCheckpoint

        return [cb for cb in self.callbacks if isinstance(cb, ModelCheckpoint)]

    @property
    def checkpoint_callback(self) -> Any:
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def early_stopping_callbacks(self) -> list[Any]:
        from fulmen.train.callbacks import EarlyStopping

        return [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]

    @property
    def early_stopping_callback(self) -> Any:
        found = self.early_stopping_callbacks
        return found[0] if found else None

    @property
    def progress_bar_callback(self) -> Any:
        from fulmen.train.callbacks import ProgressBar

        return next((cb for cb in self.callbacks if isinstance(cb, ProgressBar)), None)

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        """Latest value of every logged metric (step, epoch and plain names), as tensors."""
        merged = {**self._train_results.callback_metrics(), **self._eval_results.callback_metrics()}
        return {k: torch.tensor(v) for k, v in merged.items()}

    @property
    def logged_metrics(self) -> dict[str, float]:
        """What was last sent to the loggers, key by key."""
        return dict(self._logged_metrics)

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        """Latest values of the metrics logged with ``prog_bar=True``."""
        return {
            **self._train_results.callback_metrics(prog_bar_only=True),
            **self._eval_results.callback_metrics(prog_bar_only=True),
        }

    @property
    def precision(self) -> str:
        return self.precision_plugin.name

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self.strategy.node_rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def num_devices(self) -> int:
        return len(self.device_ids)

    @property
    def device_ids(self) -> list[int]:
        indexes = getattr(self.strategy, "device_indexes", None)
        if indexes is not None:
            return list(indexes)
        index = self.strategy.root_device.index
        return [0 if index is None else index]

    @property
    def num_nodes(self) -> int:
        return int(getattr(self.strategy, "num_nodes", 1))

    @property
    def stage(self) -> RunningStage | None:
        """The running loop (``state.stage``); set by name ("train", "validate"; "fit": train)."""
        return self.state.stage

    @stage.setter
    def stage(self, stage: str | None) -> None:
        self.state.stage = (
            None if stage is None else RunningStage("train" if stage == "fit" else stage)
        )

    @property
    def _entry(self) -> TrainerFn | None:
        """The running entry point (``state.fn``)."""
        return self.state.fn

    @_entry.setter
    def _entry(self, fn: str | None) -> None:
        self.state.fn = None if fn is None else TrainerFn(fn)

    @property
    def sanity_checking(self) -> bool:
        return self.state.stage == RunningStage.SANITY_CHECKING

    @sanity_checking.setter
    def sanity_checking(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.SANITY_CHECKING
        elif self.sanity_checking:
            self.state.stage = None

    @property
    def interrupted(self) -> bool:
        """Did the last entry point stop on an exception (Ctrl-C included), as in Lightning?"""
        return self.state.status == TrainerStatus.INTERRUPTED

    @property
    def training(self) -> bool:
        return self.stage == "train"

    @property
    def validating(self) -> bool:
        return self.stage == "validate"

    @property
    def testing(self) -> bool:
        return self.stage == "test"

    @property
    def predicting(self) -> bool:
        return self.stage == "predict"

    @property
    def estimated_stepping_batches(self) -> float:
        """Optimizer steps the fit will take (max_steps, else batches / accumulation * epochs)."""
        if self.max_steps != -1:
            return self.max_steps
        if self.train_dataloader is None and self.lightning_module is not None:
            _data.load_train_dataloader(self)
        per_epoch = math.ceil(self.num_training_batches / self.accumulate_grad_batches)
        if self.max_epochs == -1:
            return math.inf
        return per_epoch * self.max_epochs

    # ------------------------------------------------------------------ entry points
    def fit(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Train ``model``; with ``ckpt_path`` (a path, "last" or "best") resume from there."""
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        if datamodule is not None and (
            train_dataloaders is not None or val_dataloaders is not None
        ):
            raise ValueError("fit(): pass dataloaders or a datamodule, not both")
        if self._max_epochs_unset:
            from fulmen.train.callbacks import Timer

            if self.max_steps != -1 or any(isinstance(cb, Timer) for cb in self.callbacks):
                self.max_epochs = -1
            else:
                self.max_epochs = 1000
                rank_zero_warn(
                    "`max_epochs` was not set. Setting it to 1000 epochs. To train without an "
                    "epoch limit, set `max_epochs=-1`.",
                    PossibleUserWarning,
                    stacklevel=4,  # the caller of fit (through rank_zero_only's wrapper)
                )
        self._run("fit", model, datamodule, ckpt_path, train_dataloaders, val_dataloaders)

    def validate(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """Run the validation loop once; one dict of epoch metrics per dataloader."""
        return self._evaluate("validate", model, dataloaders, ckpt_path, verbose, datamodule)

    def test(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """Run the test loop once; one dict of epoch metrics per dataloader."""
        return self._evaluate("test", model, dataloaders, ckpt_path, verbose, datamodule)

    def _evaluate(
        self,
        stage: str,
        model: LightningModule | None,
        dataloaders: Any,
        ckpt_path: str | os.PathLike[str] | None,
        verbose: bool,
        datamodule: LightningDataModule | None,
    ) -> list[dict[str, float]]:
        """``validate`` and ``test``: a datamodule may come as ``dataloaders``, as in Lightning."""
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        result: list[dict[str, float]] = self._run(
            stage, model, datamodule, ckpt_path, None, dataloaders, verbose=verbose
        )
        return result

    def predict(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        return_predictions: bool | None = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        *,
        gather_predictions: bool = False,
    ) -> Any:
        """``predict_step`` over the dataloader(s): a list of outputs (a list per dataloader).

        Under DDP each rank predicts its share; ``gather_predictions=True`` returns every rank's
        outputs on every rank (see docs/distributed.md)."""
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        return self._run(
            "predict",
            model,
            datamodule,
            ckpt_path,
            None,
            dataloaders,
            return_predictions=return_predictions is not False,
            gather=gather_predictions,
        )

    def save_checkpoint(
        self,
        filepath: str | os.PathLike[str],
        weights_only: bool = False,
        storage_options: Any = None,
    ) -> None:
        """Write a checkpoint of the current state to ``filepath`` (atomically, rank zero)."""
        if self.lightning_module is None:
            raise RuntimeError(
                "save_checkpoint: no model is attached (call fit/validate/... first)"
            )
        checkpoint = _checkpoint.dump_checkpoint(self, weights_only)
        if self.is_global_zero:
            _checkpoint.save_atomically(checkpoint, filepath)
        self.strategy.barrier("save_checkpoint")

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.is_global_zero:
            print(*args, **kwargs)

    # ------------------------------------------------------------------ the run
    def _run(self, *args: Any, **options: Any) -> Any:
        # DDP starts or joins the other processes here (ddp_spawn runs _run_here in them).
        return self.strategy.launch(self._run_here, *args, **options)

    def __getstate__(self) -> dict[str, Any]:  # ddp_spawn pickles the Trainer
        state = self.__dict__.copy()
        state.pop("_to_device", None)
        state.pop("_train_step", None)  # a bound method of this Trainer
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._to_device = _identity_transfer
        self._train_step = self._automatic_step

    def _run_here(
        self,
        stage: str,
        model: LightningModule | None,
        datamodule: LightningDataModule | None,
        ckpt_path: Any,
        train_loaders: Any,
        eval_loaders: Any,
        **options: Any,
    ) -> Any:
        if model is None:
            model, datamodule, ckpt_path = self._previous_model(stage, datamodule, ckpt_path)
        if not isinstance(model, LightningModule):
            raise TypeError(
                f"{stage}(model=...) expects a fulmen LightningModule, got {type(model).__name__}"
            )
        self.lightning_module, self.datamodule = model, datamodule
        model.trainer = self
        if datamodule is not None:
            datamodule.trainer = self
        self.state.status, self.stage, self.should_stop = TrainerStatus.RUNNING, stage, False
        self._entry = stage
        status = "success"
        try:
            with torch.autograd.set_detect_anomaly(self.detect_anomaly):
                return self._run_stage(stage, ckpt_path, train_loaders, eval_loaders, **options)
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            status = "interrupted" if interrupted else "failed"
            self.state.status = TrainerStatus.INTERRUPTED  # Lightning's status for any exception
            if interrupted:
                # a second Ctrl-C must not cut the graceful shutdown short
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                print("\nDetected KeyboardInterrupt, attempting graceful shutdown ...")
            for cb in self.callbacks:
                try:
                    cb.on_exception(self, model, exc)
                except Exception as inner:  # the original error matters more
                    warnings.warn(
                        f"{type(cb).__name__}.on_exception raised {inner!r}",
                        UserWarning,
                        stacklevel=2,
                    )
            if datamodule is not None and hasattr(datamodule, "on_exception"):
                datamodule.on_exception(exc)
            try:
                self._teardown(stage, status)
            except Exception as inner:  # never hide the error that stopped the run
                warnings.warn(f"teardown raised {inner!r}", UserWarning, stacklevel=2)
            if interrupted:
                signal.signal(signal.SIGINT, previous)
                raise SystemExit(1) from exc
            raise
        finally:
            if status == "success":
                self.state.status = TrainerStatus.FINISHED
                self._teardown(stage, status)
            self.stage = None  # state.fn stays: the entry point that ran last, as in Lightning

    def _previous_model(
        self, stage: str, datamodule: LightningDataModule | None, ckpt_path: Any
    ) -> tuple[LightningModule, LightningDataModule | None, Any]:
        """No model given: the previous fit's, with its best checkpoint unless ckpt_path says."""
        if self.lightning_module is None:
            raise ValueError(f"{stage}(): pass a model (no model from an earlier fit)")
        best = getattr(self.checkpoint_callback, "best_model_path", "")
        if ckpt_path is None and stage != "fit" and best:
            warnings.warn(
                f"{stage}(ckpt_path=None) was called without a model: the best model of the "
                f"previous fit is used ({best}). Pass ckpt_path='last' or a path to choose.",
                UserWarning,
                stacklevel=4,
            )
            ckpt_path = "best"
        return self.lightning_module, datamodule or self.datamodule, ckpt_path

    def _teardown(self, stage: str, status: str) -> None:
        module = self.lightning_module
        assert module is not None
        lifecycle = "fit" if stage == "fit" else stage
        # the stage by keyword, as Lightning passes it (``def teardown(self, stage)`` and
        # ``def teardown(self, **kwargs)`` both work)
        if self.datamodule is not None:
            self.datamodule.teardown(stage=lifecycle)
        for cb in self.callbacks:
            self._hooks.call_one(cb, "teardown", stage=lifecycle)
        module.teardown(stage=lifecycle)
        self.strategy.teardown()
        for logger in self.loggers:
            logger.finalize(status)

    def _run_stage(
        self, stage: str, ckpt_path: Any, train_loaders: Any, eval_loaders: Any, **options: Any
    ) -> Any:
        module = self.lightning_module
        assert module is not None
        checkpoint = None
        self.ckpt_path = None
        if ckpt_path is not None:
            checkpoint = _checkpoint.resolve_and_load(self, ckpt_path, stage)
            if checkpoint is not None:
                _checkpoint.restore_loggers(self, checkpoint)
        self._attach_module(module)
        self._prepare_callbacks(module)  # configure_callbacks before prepare_data, as Lightning
        datamodule = self.datamodule
        per_node = getattr(datamodule or module, "prepare_data_per_node", True)
        if (self.local_rank if per_node else self.global_rank) == 0:  # downloads happen once
            if datamodule is not None:
                datamodule.prepare_data()
            module.prepare_data()
        self.strategy.barrier("prepare_data")
        if datamodule is not None:
            datamodule.setup(stage=stage)
        self._hooks.call("setup", stage=stage)  # by keyword, as Lightning passes it
        module.configure_model()
        self._to_device = batch_transfer(module, self.precision_plugin, self.strategy)

        if stage == "fit":
            self._fit(module, checkpoint, train_loaders, eval_loaders)
            return None
        if checkpoint is not None:
            _checkpoint.restore_module(self, checkpoint)
        if stage == "predict":
            return _evaluation.predict(
                self, module, eval_loaders, options["return_predictions"], options["gather"]
            )
        return _evaluation.evaluate_standalone(
            self, stage, module, eval_loaders, options["verbose"]
        )

    def _attach_module(self, module: LightningModule) -> None:
        module.to(self.strategy.root_device)
        self.precision_plugin.convert_module(module)
        self._model = self.strategy.setup_module(module)

    def _prepare_callbacks(self, module: LightningModule) -> None:
        extra = module.configure_callbacks()
        if extra:
            extra = list(extra) if isinstance(extra, list | tuple) else [extra]
            kinds = {type(cb) for cb in extra}
            kept = [cb for cb in self.callbacks if type(cb) not in kinds]
            self.callbacks = checkpoints_last([*kept, *extra])
        # Per hook, only the callbacks (and the module) whose class overrides it are called: an
        # unused hook costs nothing.
        self._hooks.prepare(self.callbacks, module)

    # ------------------------------------------------------------------ hook dispatch
    def _event(self, hook: str, *args: Any) -> Any:
        """Fire ``hook``: the callbacks', then the module's (see ``_hooks.Hooks.call``)."""
        return self._hooks.call(hook, *args)

    # ------------------------------------------------------------------ fit
    def _fit(
        self,
        module: LightningModule,
        checkpoint: dict[str, Any] | None,
        train_loaders: Any,
        val_loaders: Any,
    ) -> None:
        _data.load_train_dataloader(self, train_loaders)
        _data.load_val_dataloaders(self, val_loaders)
        _optim.configure_optimizers(self, module)
        self.current_epoch = self.global_step = self._batches_that_stepped = 0
        self._resume_batches = 0
        self._train_results.reset()
        if checkpoint is not None:
            _checkpoint.restore_module(self, checkpoint)
            _checkpoint.restore_training_state(self, checkpoint)
        self._log_hyperparams(module)
        self._hooks.call("on_fit_start")
        _evaluation.sanity_check(self)
        if checkpoint is not None and "rng_states" in checkpoint:
            _checkpoint.set_rng_states(checkpoint["rng_states"])
        self.stage = "train"
        module.train()
        self._hooks.call("on_train_start")
        while not self._fit_done():
            self._train_epoch(module)
        self._hooks.call("on_train_end")
        self.stage = "fit"
        self._hooks.call("on_fit_end")

    def _fit_done(self) -> bool:
        if self.max_steps != -1 and self.global_step >= self.max_steps:
            return True
        if self.max_epochs != -1 and self.current_epoch >= self.max_epochs:
            return True
        return self.should_stop and self._min_reached(self.current_epoch)

    def _min_reached(self, epochs_done: int) -> bool:
        return epochs_done >= self.min_epochs and self.global_step >= self.min_steps

    def _train_epoch(self, module: LightningModule) -> None:
        """One training epoch: batches, validation when due, then the epoch-end events."""
        loader = _data.train_loader_for_epoch(self)
        limit = self.num_training_batches
        skip, self._resume_batches = self._resume_batches, 0
        self._batch_in_epoch, self._epoch_done = skip, False
        self._train_results.fresh.clear()
        self._hooks.call("on_train_epoch_start")
        self._train_step = (
            self._automatic_step if module.automatic_optimization else self._manual_step
        )
        # what stays the same for the whole epoch, looked up once rather than at every batch
        to_device = None if self._to_device is _identity_transfer else self._to_device
        validates = _data.epoch_validates(self)
        validated_at = -1
        for batch_idx, loaded in enumerate(loader):
            if batch_idx >= limit:
                break
            if batch_idx < skip:  # already trained before the mid-epoch checkpoint
                continue
            batch = loaded if to_device is None else to_device(loaded, 0)
            if self._train_batch(module, batch, batch_idx, limit):
                break  # on_train_batch_start returned -1
            if validates and _data.validation_due(self, batch_idx, limit):
                _evaluation.validate_in_fit(self)
                validated_at = batch_idx
            if (self.should_stop and self._min_reached(self.current_epoch + 1)) or (
                self.max_steps != -1 and self.global_step >= self.max_steps
            ):
                break
        if (
            math.isinf(limit)
            and validated_at != self._batch_in_epoch - 1
            and self.val_check_interval == 1.0
            and _data.epoch_validates(self)
        ):
            _evaluation.validate_in_fit(self)
        # Epoch schedulers step before on_train_epoch_end, so a checkpoint saved there holds
        # their new state and a resumed run continues exactly.
        _optim.step_schedulers(self, "epoch")
        self._epoch_done = True
        # The module's hook first, so that what it logs is seen by checkpointing/early stopping.
        self._fx = "on_train_epoch_end"
        module.on_train_epoch_end()
        self._train_results.sync_epoch()  # sync_dist values, batched, before callbacks read them
        hooks = self._hooks
        for cb in hooks.callbacks["on_train_epoch_end"]:
            hooks.call_one(cb, "on_train_epoch_end")
        self._emit(self._train_results.epoch_metrics())
        self._train_results.end_epoch()
        for logger in self.loggers:
            logger.save()
        self.current_epoch += 1
        self._epoch_done, self._batch_in_epoch = False, 0

    def _train_batch(
        self, module: LightningModule, batch: Any, batch_idx: int, limit: float
    ) -> bool:
        """One training batch; True when on_train_batch_start asked to end the epoch."""
        self._batch, self._batch_size = batch, None
        self._train_results.fresh.clear()
        quiet = self._hooks.quiet
        if (
            "on_train_batch_start" not in quiet
            and self._hooks.call("on_train_batch_start", batch, batch_idx) == -1
        ):
            return True
        accumulate = self.accumulate_grad_batches
        accumulating = (
            accumulate > 1 and (batch_idx + 1) % accumulate != 0 and batch_idx + 1 < limit
        )
        outputs = self._train_step(module, batch, batch_idx, accumulating)
        self._batch_in_epoch = batch_idx + 1  # a checkpoint saved from here resumes after it
        if "on_train_batch_end" not in quiet:
            self._hooks.call("on_train_batch_end", outputs, batch, batch_idx)
        if not accumulating:
            n = self.log_every_n_steps
            if n and self.loggers and (self._batches_that_stepped + 1) % n == 0:
                self._emit(self._train_results.step_metrics())  # a sync point (.item())
            self._batches_that_stepped += 1
        return False

    def _manual_step(
        self, module: LightningModule, batch: Any, batch_idx: int, accumulating: bool
    ) -> Any:
        """Manual optimization: training_step calls manual_backward and steps by itself."""
        self._fx = "training_step"
        with self.precision_plugin.forward_context():
            return self.strategy.training_step(module, batch, batch_idx)

    def _automatic_step(
        self, module: LightningModule, batch: Any, batch_idx: int, accumulating: bool
    ) -> Any:
        """training_step, backward and (unless accumulating) the optimizer step."""
        if not self._lightning_optimizers:  # configure_optimizers returned None
            return self._manual_step(module, batch, batch_idx, accumulating)
        optimizer = self._lightning_optimizers[0]
        accumulate = self.accumulate_grad_batches
        window_start = batch_idx % accumulate == 0
        quiet = self._hooks.quiet
        returned: list[Any] = [None]

        def closure() -> torch.Tensor | None:
            self._fx = "training_step"
            with self.precision_plugin.forward_context():
                output = self.strategy.training_step(module, batch, batch_idx)
            loss = _optim.loss_of(output)
            if loss is None:  # the module skipped this batch: make the step a no-op
                optimizer.zero_grad()
                returned[0] = output
                return None
            if window_start:
                if "on_before_zero_grad" not in quiet:
                    self._hooks.call("on_before_zero_grad", optimizer)
                module.optimizer_zero_grad(self.current_epoch, batch_idx, optimizer)
            self._backward(loss / accumulate if accumulate > 1 else loss, sync=not accumulating)
            if isinstance(output, dict):
                returned[0] = output
            elif "on_train_batch_end" not in quiet:  # its only reader; a detach is a tensor
                returned[0] = {"loss": loss.detach()}
            return loss

        if accumulating:
            closure()
        else:
            module.optimizer_step(self.current_epoch, batch_idx, optimizer, closure)
            if self._steps_schedulers:
                _optim.step_schedulers(self, "step")
        return returned[0]

    def _backward(self, loss: torch.Tensor, *args: Any, sync: bool = True, **kwargs: Any) -> None:
        quiet = self._hooks.quiet  # (checked here: these run every step)
        if "on_before_backward" not in quiet:
            self._hooks.call("on_before_backward", loss)
        with self.strategy.backward_sync(sync):
            self.lightning_module.backward(loss, *args, **kwargs)
        if "on_after_backward" not in quiet:
            self._hooks.call("on_after_backward")

    def _before_optimizer_step(self, optimizer: LightningOptimizer, clip: bool) -> None:
        if "on_before_optimizer_step" not in self._hooks.quiet:
            self._hooks.call("on_before_optimizer_step", optimizer)
        if clip and (self.gradient_clip_val or self._custom_clipping):
            self._fx = "configure_gradient_clipping"
            self.lightning_module.configure_gradient_clipping(
                optimizer, self.gradient_clip_val, self.gradient_clip_algorithm
            )

    # ------------------------------------------------------------------ loop state (checkpoints)
    def _loop_state(self) -> LoopState:
        return LoopState(
            epoch=self.current_epoch,
            global_step=self.global_step,
            batches_that_stepped=self._batches_that_stepped,
            batch_in_epoch=self._batch_in_epoch,
            epoch_done=self._epoch_done,
        )

    def _restore_loop_state(self, state: dict[str, Any], checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint's ``loops["fit_loop"]`` (older checkpoints: its top level)."""
        epoch = int(state.get("epoch", checkpoint.get("epoch", 0)))
        done = bool(state.get("epoch_done", True))
        global_step = int(state.get("global_step", checkpoint.get("global_step", 0)))
        loop = LoopState(
            epoch=epoch,
            global_step=global_step,
            batches_that_stepped=int(state.get("batches_that_stepped", global_step)),
            batch_in_epoch=0 if done else int(state.get("batch_in_epoch", 0)),
            epoch_done=done,
        )
        self.current_epoch = loop.epoch + 1 if loop.epoch_done else loop.epoch
        self.global_step = loop.global_step
        self._batches_that_stepped = loop.batches_that_stepped
        self._resume_batches = loop.batch_in_epoch

    # ------------------------------------------------------------------ logging
    def _log(
        self,
        name: str,
        value: Any,
        prog_bar: bool,
        logger: bool | None,
        on_step: bool | None,
        on_epoch: bool | None,
        reduce_fx: Any,
        sync_dist: bool,
        add_dataloader_idx: bool,
        batch_size: int | None,
    ) -> None:
        """``self.log``'s one path: a dict lookup, ``as_value`` and ``_Metric.update``."""
        results = self._results
        key = (self._fx, name, self._dataloader_idx)
        metric = results.cache.get(key)
        if metric is None:  # the first call under this key: defaults and checks
            metric = new_metric(
                results,
                self._dataloader_idx,
                self.strategy.reduce if self.world_size > 1 else None,
                self._fx,
                name,
                prog_bar,
                logger,
                on_step,
                on_epoch,
                reduce_fx,
                sync_dist,
                add_dataloader_idx,
            )
            results.add(key, metric)
        value = as_value(name, value)  # no .item() here: that would be a device sync
        if metric.on_epoch and metric.reduce_fx == "mean" and batch_size is None:
            batch_size = self._batch_size
            if batch_size is None:
                batch_size = self._batch_size = extract_batch_size(self._batch)
        metric.update(value, batch_size or 1)
        results.fresh[metric.name] = metric

    def _emit(self, metrics: dict[str, float]) -> None:
        """Send ``metrics`` (plus "epoch") to every logger at the current step."""
        if not metrics:
            return
        step = int(metrics.pop("step", self._batches_that_stepped))  # ``metrics`` is ours to edit
        self._logged_metrics.update(metrics)  # what was logged: no "epoch", as in Lightning
        metrics.setdefault("epoch", self.current_epoch)
        for logger in self.loggers:
            logger.log_metrics(metrics, step)

    def _log_hyperparams(self, module: LightningModule) -> None:
        params: dict[str, Any] = {}
        if module._log_hyperparams:
            params.update(module.hparams_initial)
        datamodule = self.datamodule
        if datamodule is not None and getattr(datamodule, "_log_hyperparams", True):
            params.update(datamodule.hparams_initial)
        for logger in self.loggers:
            logger.log_hyperparams(params)
