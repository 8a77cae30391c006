"""``LightningModule`` and ``LightningDataModule``: the user's code, organized by Lightning's hooks.

Every hook is a do-nothing method here; the Trainer calls them in the order written in
``fulmen.train.trainer``. Nothing in this file runs per step except ``log`` (see ``_results``).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from fulmen.train import _export
from fulmen.train._hparams import AttributeDict, collect_hparams, frozen_copy

if TYPE_CHECKING:
    from fulmen.train.trainer import Trainer

__all__ = ["LightningDataModule", "LightningModule"]


class _HyperparametersMixin:
    """``save_hyperparameters``/``hparams``: shared by LightningModule and LightningDataModule."""

    _hparams: AttributeDict
    _hparams_initial: AttributeDict
    _log_hyperparams: bool

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: Sequence[str] | str | None = None,
        frame: Any = None,
        logger: bool = True,
    ) -> None:
        """Save ``__init__``'s arguments (or the named ones, or one dict) into ``self.hparams``.

        They go into checkpoints (``load_from_checkpoint`` passes them back to ``__init__``) and,
        unless ``logger=False``, to the loggers at fit start.
        """
        caller = frame if frame is not None else inspect.currentframe()
        try:
            params = collect_hparams(self, args, ignore, caller.f_back if frame is None else caller)  # type: ignore[union-attr]
        finally:
            del caller
        object.__setattr__(self, "_log_hyperparams", logger)
        object.__setattr__(self, "_hparams", AttributeDict(params))
        object.__setattr__(self, "_hparams_initial", frozen_copy(params))

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters (mutable; an empty dict before ``save_hyperparameters``)."""
        if not hasattr(self, "_hparams"):
            object.__setattr__(self, "_hparams", AttributeDict())
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        """A copy of the hyperparameters as they were saved (later edits do not show)."""
        if not hasattr(self, "_hparams_initial"):
            return AttributeDict()
        return frozen_copy(self._hparams_initial)


class LightningModule(_HyperparametersMixin, torch.nn.Module):
    """A ``torch.nn.Module`` that also says how to train, validate, test and predict itself."""

    # TorchScript skips these (they read the Trainer): see fulmen.train._export
    __jit_unused_properties__: list[str] = _export.JIT_UNUSED_PROPERTIES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Trainer | None = None
        self._automatic_optimization = True
        self._log_hyperparams = True
        self.example_input_array: Any = None
        self._param_requires_grad_state: dict[torch.nn.Parameter, bool] = {}

    # ----------------------------------------------------------------- trainer-backed properties
    @property
    def trainer(self) -> Trainer:
        """The Trainer this module is attached to (an error when there is none)."""
        if self._trainer is None and not self.__dict__.get("_jit_is_scripting"):
            raise RuntimeError(f"{type(self).__qualname__} is not attached to a `Trainer`.")
        return self._trainer  # type: ignore[return-value]  # None only while TorchScript reads it

    @trainer.setter
    def trainer(self, trainer: Trainer | None) -> None:
        self._trainer = trainer

    @property
    def automatic_optimization(self) -> bool:
        """False: ``training_step`` calls ``manual_backward`` and ``opt.step()`` itself."""
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    @property
    def global_step(self) -> int:
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_rank(self) -> int:
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def device(self) -> torch.device:
        for param in self.parameters():
            return param.device
        for buffer in self.buffers():
            return buffer.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.parameters():
            return tensor.dtype
        return torch.get_default_dtype()

    @property
    def logger(self) -> Any:
        """The Trainer's first logger, or None."""
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list[Any]:
        return self._trainer.loggers if self._trainer is not None else []

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank zero only."""
        if self.global_rank == 0:
            print(*args, **kwargs)

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Tensors (or a dict/list/tuple of them) from every process, each stacked on a new first
        dimension of size world_size; unchanged in a single process. A collective under DDP."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return data
        strategy = trainer.strategy

        def gather(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: gather(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return type(value)(gather(v) for v in value)
            tensor = torch.as_tensor(value, device=strategy.root_device)
            return strategy.all_gather(tensor, sync_grads=sync_grads)

        return gather(data)

    # ----------------------------------------------------------------- logging
    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: str | Any = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        metric_attribute: str | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Record a scalar. Defaults depend on the hook: see docs/train.md, "Logging"."""
        trainer = self._trainer
        if trainer is None:
            return  # Lightning also ignores logging outside a Trainer
        trainer._log(
            name,
            value,
            prog_bar,
            logger,
            on_step,
            on_epoch,
            reduce_fx,
            sync_dist,
            add_dataloader_idx,
            batch_size,
        )

    def log_dict(
        self,
        dictionary: Mapping[str, Any],
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: str | Any = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """``self.log`` for every item of ``dictionary``, with the same options."""
        for name, value in dictionary.items():
            self.log(
                name,
                value,
                prog_bar=prog_bar,
                logger=logger,
                on_step=on_step,
                on_epoch=on_epoch,
                reduce_fx=reduce_fx,
                sync_dist=sync_dist,
                add_dataloader_idx=add_dataloader_idx,
                batch_size=batch_size,
            )

    # ----------------------------------------------------------------- optimization
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer(s) from ``configure_optimizers`` (one object when there is one)."""
        opts: list[Any] = (
            self.trainer._lightning_optimizers if use_pl_optimizer else self.trainer.optimizers
        )
        return opts[0] if len(opts) == 1 else opts

    def lr_schedulers(self) -> Any:
        """The scheduler(s) from ``configure_optimizers`` (None, one, or a list)."""
        schedulers = [c.scheduler for c in self.trainer.lr_scheduler_configs]
        if not schedulers:
            return None
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Backward with the precision's scaling and the backward hooks (manual optimization)."""
        self.trainer._backward(loss, *args, **kwargs)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """How the loss is backpropagated; override to customize."""
        # _trainer first: the property's check costs a call per step (it raises when detached)
        (self._trainer or self.trainer).precision_plugin.backward(loss, *args, **kwargs)

    def clip_gradients(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradients of ``optimizer``'s parameters by norm (default) or value."""
        if not gradient_clip_val:
            return
        algorithm = gradient_clip_algorithm or "norm"
        optimizer = getattr(optimizer, "optimizer", optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        elif algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            raise ValueError(
                f"gradient_clip_algorithm={algorithm!r} is unknown; choose 'norm' or 'value'"
            )

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Called before each optimizer step with the Trainer's clipping settings."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Step ``optimizer``; the closure runs training_step and backward. Override to warm up."""
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        """Zero the gradients (``set_to_none``), once per accumulation window."""
        optimizer.zero_grad()

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Step one scheduler (``metric`` is the monitored value for ReduceLROnPlateau)."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def toggle_optimizer(self, optimizer: Any) -> None:
        """Until ``untoggle_optimizer``, the parameters of the *other* optimizers do not require
        grad (so a GAN's generator step leaves no gradients on the discriminator), as in
        Lightning; parameters no optimizer holds are left alone. Their flags are remembered."""
        current = getattr(optimizer, "optimizer", optimizer)
        own = {id(p) for g in current.param_groups for p in g["params"]}
        saved: dict[torch.nn.Parameter, bool] = {}
        for other in self.trainer.optimizers:
            for group in other.param_groups:
                for param in group["params"]:
                    if id(param) not in own and param not in saved:
                        saved[param] = param.requires_grad
                        param.requires_grad = False
        self._param_requires_grad_state = saved

    def untoggle_optimizer(self, optimizer: Any) -> None:
        """Give back the ``requires_grad`` flags that ``toggle_optimizer`` turned off."""
        for param, flag in self._param_requires_grad_state.items():
            param.requires_grad = flag
        self._param_requires_grad_state = {}

    @contextlib.contextmanager
    def toggled_optimizer(self, optimizer: Any) -> Iterator[None]:
        """``with self.toggled_optimizer(opt):`` toggles it, and untoggles it on the way out."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        for p in self.parameters():
            p.requires_grad = True
        self.train()

    @torch.no_grad()
    def to_torchscript(
        self,
        file_path: str | os.PathLike[str] | None = None,
        method: str | None = "script",
        example_inputs: Any = None,
        **kwargs: Any,
    ) -> Any:
        """The module as TorchScript (``method="script"`` or ``"trace"`` on ``example_inputs``
        or ``example_input_array``), saved to ``file_path`` when given."""
        return _export.to_torchscript(self, file_path, method, example_inputs, **kwargs)

    # ----------------------------------------------------------------- user steps
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return super().forward(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """Return the loss (a tensor), a dict with a "loss" key, or None to skip the batch."""
        raise NotImplementedError(
            f"{type(self).__qualname__} has no training_step; define "
            "training_step(self, batch, batch_idx) returning the loss to train with it"
        )

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """One validation batch; log with ``self.log``."""

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """One test batch; log with ``self.log``."""

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """One prediction batch; the default calls ``self(batch)``."""
        return self(batch)

    def configure_optimizers(self) -> Any:
        """Return the optimizer(s) and scheduler(s), in any of Lightning's forms."""
        raise NotImplementedError(
            f"{type(self).__qualname__} has no configure_optimizers; define it to return an "
            "optimizer (or a list, a tuple (optimizers, schedulers), or a dict)"
        )

    def configure_callbacks(self) -> Any:
        """Callbacks the module adds to the Trainer's (replacing those of the same type)."""
        return []

    def configure_model(self) -> None:
        """Create layers lazily, at the start of fit/validate/test/predict."""

    # ----------------------------------------------------------------- hooks (in loop order)
    def prepare_data(self) -> None:
        """Download or prepare data once (before setup)."""

    def setup(self, stage: str) -> None:
        """Before the run; ``stage`` is "fit", "validate", "test" or "predict"."""

    def teardown(self, stage: str) -> None:
        """After the run (always)."""

    def on_fit_start(self) -> None:
        """When fit begins."""

    def on_fit_end(self) -> None:
        """When fit ends normally."""

    def on_train_start(self) -> None:
        """Before the first training epoch."""

    def on_train_end(self) -> None:
        """After the last training epoch."""

    def on_train_epoch_start(self) -> None:
        """At the start of each training epoch."""

    def on_train_epoch_end(self) -> None:
        """At the end of each training epoch (after its validation)."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
        """Before ``training_step``; return -1 to skip the rest of the epoch."""

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the batch (backward and optimizer step included)."""

    def on_before_zero_grad(self, optimizer: Any) -> None:
        """Before gradients are zeroed."""

    def on_before_backward(self, loss: torch.Tensor) -> None:
        """Before backward."""

    def on_after_backward(self) -> None:
        """After backward."""

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Before the optimizer step (gradients unscaled, not yet clipped)."""

    def on_validation_start(self) -> None:
        """When validation begins."""

    def on_validation_end(self) -> None:
        """When validation ends."""

    def on_validation_epoch_start(self) -> None:
        """Before the first validation batch."""

    def on_validation_epoch_end(self) -> None:
        """After the last validation batch."""

    def on_validation_batch_start(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Before ``validation_step``."""

    def on_validation_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """After ``validation_step``."""

    def on_validation_model_eval(self) -> None:
        """Put the model in eval mode for validation."""
        self.eval()

    def on_validation_model_train(self) -> None:
        """Put the model back in train mode after validation."""
        self.train()

    def on_test_model_eval(self) -> None:
        self.eval()

    def on_test_model_train(self) -> None:
        self.train()

    def on_predict_model_eval(self) -> None:
        self.eval()

    def on_test_start(self) -> None:
        """When test begins."""

    def on_test_end(self) -> None:
        """When test ends."""

    def on_test_epoch_start(self) -> None:
        """Before the first test batch."""

    def on_test_epoch_end(self) -> None:
        """After the last test batch."""

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Before ``test_step``."""

    def on_test_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """After ``test_step``."""

    def on_predict_start(self) -> None:
        """When predict begins."""

    def on_predict_end(self) -> None:
        """When predict ends."""

    def on_predict_epoch_start(self) -> None:
        """Before the first predict batch."""

    def on_predict_epoch_end(self) -> None:
        """After the last predict batch."""

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Before ``predict_step``."""

    def on_predict_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """After ``predict_step``."""

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch before it moves to the device."""
        return batch

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """Move the batch to ``device`` (override for custom batch types)."""
        from fulmen.train.strategy import move_to_device

        return move_to_device(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch after it moved to the device."""
        return batch

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add entries to a checkpoint before it is written."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read entries of a checkpoint being restored."""

    def train_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} has no train_dataloader")

    def val_dataloader(self) -> Any:
        return []

    def test_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} has no test_dataloader")

    def predict_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} has no predict_dataloader")

    # ----------------------------------------------------------------- checkpoints
    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | os.PathLike[str],
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool = True,
        **kwargs: Any,
    ) -> Any:
        """A new module built from the checkpoint's hyperparameters (``kwargs`` override them)."""
        checkpoint = torch.load(checkpoint_path, map_location=map_location, weights_only=False)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        signature = inspect.signature(cls.__init__)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        if not takes_any:
            hparams = {k: v for k, v in hparams.items() if k in signature.parameters}
        hparams.update(kwargs)
        model = cls(**hparams)
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(checkpoint["state_dict"], strict=strict)
        if (
            map_location is not None
            and not callable(map_location)
            and not isinstance(map_location, dict)
        ):
            model.to(map_location)
        return model


class LightningDataModule(_HyperparametersMixin):
    """The data of a run: ``prepare_data``, ``setup(stage)``, the four dataloaders, ``teardown``."""

    def __init__(self) -> None:
        self.trainer: Trainer | None = None
        self._log_hyperparams = True

    def __str__(self) -> str:
        """One line per dataloader with its dataset size (Lightning's summary)."""
        return _export.describe_datamodule(self)

    def prepare_data(self) -> None:
        """Download or prepare data once (rank zero)."""

    def setup(self, stage: str) -> None:
        """Build datasets for ``stage`` ("fit", "validate", "test", "predict")."""

    def teardown(self, stage: str) -> None:
        """Release what ``setup`` built."""

    def train_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} has no train_dataloader")

    def val_dataloader(self) -> Any:
        return []

    def test_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} has no test_dataloader")

    def predict_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} has no predict_dataloader")

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (empty by default)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add entries to a checkpoint."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read entries of a checkpoint."""

    @classmethod
    def from_datasets(
        cls,
        train_dataset: Any = None,
        val_dataset: Any = None,
        test_dataset: Any = None,
        predict_dataset: Any = None,
        batch_size: int = 1,
        num_workers: int = 0,
    ) -> LightningDataModule:
        """A datamodule serving the given datasets through plain DataLoaders."""
        from torch.utils.data import DataLoader

        dm = cls()

        def loader(dataset: Any, shuffle: bool) -> Any:
            return DataLoader(
                dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers
            )

        if train_dataset is not None:
            dm.train_dataloader = lambda: loader(train_dataset, True)  # type: ignore[method-assign]
        if val_dataset is not None:
            dm.val_dataloader = lambda: loader(val_dataset, False)  # type: ignore[method-assign]
        if test_dataset is not None:
            dm.test_dataloader = lambda: loader(test_dataset, False)  # type: ignore[method-assign]
        if predict_dataset is not None:
            dm.predict_dataloader = lambda: loader(predict_dataset, False)  # type: ignore[method-assign]
        return dm
