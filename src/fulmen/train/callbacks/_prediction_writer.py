"""BasePredictionWriter: write predictions as ``predict`` makes them (Lightning's callback).

Subclass it and implement ``write_on_batch_end`` and/or ``write_on_epoch_end``. Each batch comes
with ``batch_indices``, the dataset indices of its samples: the writer wraps each prediction
loader's batch sampler for the epoch and hands out the index lists in the order the loader
drew them (first in, first out, so worker prefetching does not shift them).
"""

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fulmen.train.callback import Callback

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer

__all__ = ["BasePredictionWriter"]

_INTERVALS = ("batch", "epoch", "batch_and_epoch")


class _RecordingBatchSampler:
    """A batch sampler that remembers the index lists it yields (for ``batch_indices``)."""

    def __init__(self, inner: Any, seen: "deque[list[int]]") -> None:
        self.inner = inner
        self.seen = seen
        self.batch_size = getattr(inner, "batch_size", None)
        self.drop_last = getattr(inner, "drop_last", False)
        self.sampler = getattr(inner, "sampler", None)

    def __iter__(self) -> Iterator[list[int]]:
        for indices in self.inner:
            listed = list(indices)
            self.seen.append(listed)
            yield listed

    def __len__(self) -> int:
        return len(self.inner)


class BasePredictionWriter(Callback):
    """Write predictions to disk (or anywhere) during ``trainer.predict``.

    ``write_interval``: "batch" (``write_on_batch_end`` after each batch), "epoch"
    (``write_on_epoch_end`` once, with every prediction and its batch indices) or
    "batch_and_epoch" (both).
    """

    def __init__(self, write_interval: str = "batch") -> None:
        if write_interval not in _INTERVALS:
            raise ValueError(f"`write_interval` should be one of {list(_INTERVALS)}.")
        self.interval = write_interval
        self._pending: list[deque[list[int]]] = []
        self._restore: list[tuple[Any, Any]] = []
        self._predictions: list[list[Any]] = []
        self._batch_indices: list[list[list[int]]] = []

    @property
    def on_batch(self) -> bool:
        return self.interval in ("batch", "batch_and_epoch")

    @property
    def on_epoch(self) -> bool:
        return self.interval in ("epoch", "batch_and_epoch")

    def write_on_batch_end(
        self,
        trainer: "Trainer",
        pl_module: "LightningModule",
        prediction: Any,
        batch_indices: list[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Override to write the prediction of one batch."""
        raise NotImplementedError(
            f"{type(self).__name__}(write_interval={self.interval!r}) needs write_on_batch_end"
        )

    def write_on_epoch_end(
        self,
        trainer: "Trainer",
        pl_module: "LightningModule",
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        """Override to write every prediction at the end (one list per dataloader when there are
        several)."""
        raise NotImplementedError(
            f"{type(self).__name__}(write_interval={self.interval!r}) needs write_on_epoch_end"
        )

    def on_predict_epoch_start(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        loaders = trainer.predict_dataloaders or []
        self._pending = [deque() for _ in loaders]
        self._predictions = [[] for _ in loaders]
        self._batch_indices = [[] for _ in loaders]
        self._restore = []
        for loader, seen in zip(loaders, self._pending, strict=True):
            inner = getattr(loader, "batch_sampler", None)
            if inner is None:
                continue
            # DataLoader refuses batch_sampler assignment after __init__; the wrapper yields the
            # same index lists, so the loader's behaviour is unchanged. Undone at predict end.
            object.__setattr__(loader, "batch_sampler", _RecordingBatchSampler(inner, seen))
            self._restore.append((loader, inner))

    def on_predict_batch_end(
        self,
        trainer: "Trainer",
        pl_module: "LightningModule",
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        pending = self._pending[dataloader_idx] if dataloader_idx < len(self._pending) else None
        indices = pending.popleft() if pending else None
        if self.on_epoch:
            self._predictions[dataloader_idx].append(outputs)
            self._batch_indices[dataloader_idx].append(indices or [])
        if self.on_batch:
            self.write_on_batch_end(
                trainer, pl_module, outputs, indices, batch, batch_idx, dataloader_idx
            )

    def on_predict_epoch_end(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        if not self.on_epoch:
            return
        several = len(self._predictions) > 1
        predictions = self._predictions if several else self._predictions[0]
        indices = self._batch_indices if several else self._batch_indices[0]
        self.write_on_epoch_end(trainer, pl_module, predictions, indices)

    def on_predict_end(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        for loader, inner in self._restore:
            object.__setattr__(loader, "batch_sampler", inner)
        self._restore, self._predictions, self._batch_indices = [], [], []
