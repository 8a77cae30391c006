"""``Callback``: the one list of events the Trainer fires, each a do-nothing method.

``HOOKS`` is the single tuple of event names. The Trainer precomputes, per hook, the callbacks whose
class overrides it, so a hook nobody overrides costs one empty loop; calling a name that is not in
``HOOKS`` is an error. Where each event fires is written as pseudocode in ``fulmen.train.trainer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer

__all__ = ["HOOKS", "Callback"]

HOOKS: tuple[str, ...] = (
    "setup",
    "on_fit_start",
    "on_sanity_check_start",
    "on_sanity_check_end",
    "on_train_start",
    "on_train_epoch_start",
    "on_train_batch_start",
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_train_batch_end",
    "on_train_epoch_end",
    "on_train_end",
    "on_validation_start",
    "on_validation_epoch_start",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_validation_epoch_end",
    "on_validation_end",
    "on_test_start",
    "on_test_epoch_start",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_test_epoch_end",
    "on_test_end",
    "on_predict_start",
    "on_predict_epoch_start",
    "on_predict_batch_start",
    "on_predict_batch_end",
    "on_predict_epoch_end",
    "on_predict_end",
    "on_save_checkpoint",
    "on_load_checkpoint",
    "on_exception",
    "on_fit_end",
    "teardown",
)


class Callback:
    """Base of all callbacks: every hook does nothing until a subclass overrides it.

    Subclassing is how Lightning users write callbacks, so it stays; the built-in callbacks only
    override hooks, they share no code through this class.
    """

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint (class name plus key args)."""
        return type(self).__qualname__

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"{type(self).__qualname__}{kwargs!r}"

    def state_dict(self) -> dict[str, Any]:
        """The state saved in checkpoints (empty by default)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """When fit, validate, test or predict begins, after the module's ``setup``."""

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """When fit, validate, test or predict ends (always, even after an exception)."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When fit begins, after setup and checkpoint restore."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When fit ends normally."""

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Before the sanity-check validation batches run."""

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the sanity-check validation batches ran."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Before the first training epoch."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the last training epoch (also when stopped by should_stop)."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """At the start of each training epoch."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """At the end of each training epoch, after its validation, after the module's hook."""

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Before ``training_step``, with the batch already on the device."""

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """After the batch's backward (and optimizer step when it steps)."""

    def on_before_zero_grad(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Before gradients are zeroed (once per accumulation window)."""

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor
    ) -> None:
        """Before ``loss.backward()``."""

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After ``loss.backward()``, before the optimizer step."""

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Before ``optimizer.step()``, gradients unscaled, before clipping."""

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When a validation run begins (fit's, or ``trainer.validate``)."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When a validation run ends."""

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Before the first validation batch."""

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the last validation batch."""

    def on_validation_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Before ``validation_step``."""

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """After ``validation_step``."""

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When ``trainer.test`` begins its loop."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When ``trainer.test`` ends its loop."""

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Before the first test batch."""

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the last test batch."""

    def on_test_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Before ``test_step``."""

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """After ``test_step``."""

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When ``trainer.predict`` begins its loop."""

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """When ``trainer.predict`` ends its loop."""

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Before the first predict batch."""

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the last predict batch."""

    def on_predict_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Before ``predict_step``."""

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """After ``predict_step``."""

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """While a checkpoint dict is built, before it is written; may add entries."""

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """While a checkpoint is restored (before the callback's ``load_state_dict``)."""

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """When fit/validate/test/predict raises (KeyboardInterrupt included)."""
