"""ModelCheckpoint: save checkpoints by epoch, step or time; keep the top k by a metric."""

from __future__ import annotations

import logging
import math
import os
import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch

from fulmen.train import _paths
from fulmen.train.callback import Callback
from fulmen.train.utilities import MisconfigurationException

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer


class ModelCheckpoint(Callback):
    """Save checkpoints (Lightning's arguments and file names).

    Default path: ``<trainer.log_dir>/checkpoints/epoch=E-step=S.ckpt`` (the first logger's
    ``save_dir/name/version``), once per epoch, keeping the latest. ``filename`` is a template such
    as ``"{epoch}-{val_loss:.2f}"`` (metric names are inserted: ``epoch=3-val_loss=0.12``).
    With ``monitor``, the ``save_top_k`` best by ``mode`` are kept; ``save_last`` also writes
    ``last.ckpt``.
    """

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1

    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | str | None = None,
        save_top_k: int = 1,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
        save_on_exception: bool = False,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"ModelCheckpoint(mode={mode!r}) must be 'min' or 'max'")
        if save_top_k < -1:
            raise ValueError(f"ModelCheckpoint(save_top_k={save_top_k}) must be >= -1")
        if monitor is None and save_top_k not in (-1, 0, 1):
            raise ValueError(
                f"ModelCheckpoint(save_top_k={save_top_k}, monitor=None): keeping the top k "
                "needs a metric to rank by; set monitor"
            )
        for argument, value in (
            ("every_n_train_steps", every_n_train_steps),
            ("every_n_epochs", every_n_epochs),
        ):
            if value is not None and value < 0:  # Lightning's check and message
                raise MisconfigurationException(
                    f"Invalid value for {argument}={value}. Must be >= 0"
                )
        given = [every_n_train_steps, every_n_epochs, train_time_interval]
        if sum(1 for g in given if g) > 1:
            raise ValueError(
                "ModelCheckpoint: every_n_train_steps, every_n_epochs and train_time_interval "
                "are mutually exclusive"
            )
        self.dirpath: str | None = None
        if dirpath:  # ``~`` expanded; a remote URL (s3://, memory://) kept as it is, for fsspec
            expanded = _paths.expand(dirpath)
            self.dirpath = expanded if _paths.is_remote(expanded) else os.path.realpath(expanded)
        self.filename = filename
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.auto_insert_metric_name = auto_insert_metric_name
        self._every_n_train_steps = every_n_train_steps or 0
        self._train_time_interval = train_time_interval
        if every_n_epochs is None:
            every_n_epochs = 0 if (every_n_train_steps or train_time_interval) else 1
        self._every_n_epochs = every_n_epochs
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter
        self.save_on_exception = save_on_exception
        self.best_k_models: dict[str, torch.Tensor] = {}
        self.kth_best_model_path = ""
        self.kth_value: torch.Tensor = torch.tensor(math.inf if mode == "min" else -math.inf)
        self.best_model_score: torch.Tensor | None = None
        self.best_model_path = ""
        self.last_model_path = ""
        self.current_score: torch.Tensor | None = None
        self._last_global_step_saved = 0
        self._last_time_checked: float | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor,
            mode=self.mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
        )

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.dirpath = trainer.strategy.broadcast(self._resolve_dirpath(trainer))

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """``save_on_exception=True``: save a checkpoint of the state the error left, named
        ``<name>-exception.ckpt`` after this callback's template."""
        if not self.save_on_exception or trainer.lightning_module is None:
            return
        if self.dirpath is None:  # failed before setup resolved it
            self.dirpath = self._resolve_dirpath(trainer)
        candidates = self._monitor_candidates(trainer)
        stem = self.format_checkpoint_name(candidates)[: -len(self.FILE_EXTENSION)]
        filepath = f"{stem}{self.CHECKPOINT_JOIN_CHAR}exception{self.FILE_EXTENSION}"
        trainer.save_checkpoint(filepath, self.save_weights_only)
        logging.getLogger("fulmen.train").info(
            "An %s was raised with message: %s, saved checkpoint to %s",
            type(exception).__name__,
            exception,
            filepath,
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_time_checked = time.monotonic()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._skip(trainer):
            return
        n = self._every_n_train_steps
        due = n >= 1 and trainer.global_step % n == 0
        interval = self._train_time_interval
        if not due and interval is not None and self._last_time_checked is not None:
            now = time.monotonic()
            due = trainer.strategy.broadcast(
                now - self._last_time_checked >= interval.total_seconds()
            )
            if due:
                self._last_time_checked = now
        if due:
            self._save_all(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (
            not self._skip(trainer)
            and self._on_train_epoch_end(trainer)
            and self._epoch_due(trainer)
        ):
            self._save_all(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.stage != "validate" or trainer.sanity_checking:
            return
        if (
            not self._skip(trainer)
            and not self._on_train_epoch_end(trainer)
            and self._epoch_due(trainer)
        ):
            self._save_all(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best_model_score": self.best_model_score,
            "best_model_path": self.best_model_path,
            "current_score": self.current_score,
            "dirpath": self.dirpath,
            "best_k_models": self.best_k_models,
            "kth_best_model_path": self.kth_best_model_path,
            "kth_value": self.kth_value,
            "last_model_path": self.last_model_path,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath") == self.dirpath or self.dirpath is None:
            self.best_model_score = state_dict["best_model_score"]
            self.kth_best_model_path = state_dict.get("kth_best_model_path", "")
            self.kth_value = state_dict.get("kth_value", self.kth_value)
            self.best_k_models = dict(state_dict.get("best_k_models", {}))
            self.last_model_path = state_dict.get("last_model_path", "")
            self.current_score = state_dict.get("current_score")
        self.best_model_path = state_dict["best_model_path"]

    # ------------------------------------------------------------------ deciding
    def _skip(self, trainer: Trainer) -> bool:
        return (
            bool(trainer.fast_dev_run)
            or trainer._entry != "fit"
            or trainer.sanity_checking
            or self._last_global_step_saved == trainer.global_step
        )

    def _on_train_epoch_end(self, trainer: Trainer) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        if trainer.check_val_every_n_epoch != 1:
            return False
        if sum(trainer.num_val_batches) == 0:
            return True
        return trainer.val_check_interval == 1.0

    def _epoch_due(self, trainer: Trainer) -> bool:
        n = self._every_n_epochs
        return n >= 1 and (trainer.current_epoch + 1) % n == 0

    # ------------------------------------------------------------------ saving
    def _save_all(self, trainer: Trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        if self.save_top_k != 0:
            if self.monitor is None:
                self._save_no_monitor(trainer, candidates)
            else:
                self._save_monitored(trainer, candidates)
        self._save_last(trainer, candidates)

    def _monitor_candidates(self, trainer: Trainer) -> dict[str, Any]:
        candidates: dict[str, Any] = dict(trainer.callback_metrics)
        candidates["epoch"] = torch.tensor(trainer.current_epoch)
        candidates["step"] = torch.tensor(trainer.global_step)
        return candidates

    def _save_no_monitor(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        filepath = self._new_filepath(candidates, trainer)
        previous, self.best_model_path = self.best_model_path, filepath
        self._save(trainer, filepath)
        if self.save_top_k == 1 and previous and previous != filepath:
            self._remove(trainer, previous)

    def _save_monitored(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        assert self.monitor is not None
        if self.monitor not in candidates:
            raise KeyError(
                f"ModelCheckpoint(monitor={self.monitor!r}) could not find the monitored key in "
                f"the logged metrics: {sorted(candidates)}. HINT: did you call "
                f"self.log({self.monitor!r}, value) in the LightningModule?"
            )
        current = torch.as_tensor(candidates[self.monitor], dtype=torch.float64)
        if self._improves(current):
            self._update_best_and_save(trainer, current, candidates)
        elif self.verbose:
            trainer.print(
                f"Epoch {trainer.current_epoch}, global step {trainer.global_step}: "
                f"{self.monitor!r} was not in top {self.save_top_k}"
            )

    def _improves(self, current: torch.Tensor) -> bool:
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        if torch.isnan(current):
            return False
        better = torch.lt if self.mode == "min" else torch.gt
        return bool(better(current, self.kth_value))

    def _update_best_and_save(
        self, trainer: Trainer, current: torch.Tensor, candidates: dict[str, Any]
    ) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        to_delete = None
        if len(self.best_k_models) == k and k > 0:
            to_delete = self.kth_best_model_path
            self.best_k_models.pop(to_delete)
        if torch.isnan(current):  # NaN ranks last
            current = torch.tensor(
                math.inf if self.mode == "min" else -math.inf, dtype=torch.float64
            )
        filepath = self._new_filepath(candidates, trainer, to_delete)
        self.current_score = current
        self.best_k_models[filepath] = current
        if len(self.best_k_models) == k:
            worst = max if self.mode == "min" else min
            self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.__getitem__)
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        best = min if self.mode == "min" else max
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.__getitem__)
        self.best_model_score = self.best_k_models[self.best_model_path]
        if self.verbose:
            trainer.print(
                f"Epoch {trainer.current_epoch}, global step {trainer.global_step}: "
                f"{self.monitor!r} reached {float(current):.5f} (best "
                f"{float(self.best_model_score):.5f}), saving model to {filepath!r} as top {k}"
            )
        self._save(trainer, filepath)
        if to_delete and to_delete != filepath:
            self._remove(trainer, to_delete)

    def _save_last(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
        previous, self.last_model_path = self.last_model_path, filepath
        self._save(trainer, filepath)
        if previous and previous != filepath and previous not in self.best_k_models:
            self._remove(trainer, previous)

    def _save(self, trainer: Trainer, filepath: str) -> None:
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        for logger in trainer.loggers:
            logger.after_save_checkpoint(self)

    def _remove(self, trainer: Trainer, filepath: str) -> None:
        if trainer.is_global_zero and _paths.isfile(filepath):
            _paths.remove(filepath)

    # ------------------------------------------------------------------ names
    def _resolve_dirpath(self, trainer: Trainer) -> str:
        if self.dirpath is not None:
            return self.dirpath
        if trainer.loggers:
            first = trainer.loggers[0]
            save_dir = first.save_dir or trainer.default_root_dir
            version = first.version
            version = version if isinstance(version, str) else f"version_{version}"
            return os.path.join(save_dir, str(first.name or ""), version, "checkpoints")
        return os.path.join(trainer.default_root_dir, "checkpoints")

    def _find_last_checkpoint(self, trainer: Trainer) -> str | None:
        """``last.ckpt`` in this callback's folder, if it is there (for ``ckpt_path="last"``)."""
        if self.dirpath is None:
            return None  # a default folder is a new logger version: nothing to resume there
        path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        return path if _paths.isfile(path) else None

    @classmethod
    def _format(
        cls, filename: str, metrics: dict[str, Any], prefix: str = "", auto_insert: bool = True
    ) -> str:
        if not filename:
            filename = "{epoch}" + cls.CHECKPOINT_JOIN_CHAR + "{step}"
        groups = re.findall(r"(\{.*?)[:\}]", filename)
        values: dict[str, Any] = {}
        for index, group in enumerate(sorted(set(groups), key=len, reverse=True)):
            name = group[1:]
            safe = f"m{index}"
            if auto_insert:
                filename = filename.replace(group, name + cls.CHECKPOINT_EQUALS_CHAR + "{" + safe)
            else:
                filename = filename.replace(group, "{" + safe)
            value = metrics.get(name, torch.tensor(0))
            values[safe] = value.item() if isinstance(value, torch.Tensor) else value
        filename = filename.format(**values)
        if prefix:
            filename = cls.CHECKPOINT_JOIN_CHAR.join([prefix, filename])
        return filename

    def format_checkpoint_name(
        self, metrics: dict[str, Any], filename: str | None = None, ver: int | None = None
    ) -> str:
        """The checkpoint path for ``metrics`` under this callback's template (and version)."""
        name = self._format(
            filename or self.filename or "", metrics, "", self.auto_insert_metric_name
        )
        if ver is not None:
            name = self.CHECKPOINT_JOIN_CHAR.join((name, f"v{ver}"))
        name = name.replace(os.sep, "_") + self.FILE_EXTENSION
        return os.path.join(self.dirpath, name) if self.dirpath else name

    def _new_filepath(
        self, candidates: dict[str, Any], trainer: Trainer, to_delete: str | None = None
    ) -> str:
        filepath = self.format_checkpoint_name(candidates)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            # Rank zero's view, shared (a collective under DDP): a rank that looked after rank
            # zero had written the file would otherwise pick another name.
            while trainer.strategy.broadcast(_paths.isfile(filepath)) and filepath != to_delete:
                filepath = self.format_checkpoint_name(candidates, ver=version)
                version += 1
        return filepath
