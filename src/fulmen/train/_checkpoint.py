"""Checkpoint contents, atomic writing, and restoring a Trainer from one.

A checkpoint is a dict written with ``torch.save``:

    epoch, global_step              the loop's position when it was saved
    pytorch-lightning_version       for tools that read Lightning checkpoints
    fulmen_version
    state_dict                      the module's weights
    loops                           {"fit_loop": {"epoch", "global_step", "batches_that_stepped",
                                     "batch_in_epoch", "epoch_done"}}: where to resume
    callbacks                       {callback.state_key: callback.state_dict()}
    optimizer_states, lr_schedulers the optimizers' and schedulers' state_dicts (not with
                                    save_weights_only)
    precision                       the gradient scaler's state ("16-mixed"; else empty)
    hparams_name, hyper_parameters  the module's saved hyperparameters
    datamodule_hyper_parameters, datamodule   the datamodule's hyperparameters and state_dict
    rng_states                      python, numpy, torch (and CUDA) generator states
    loggers                         {logger key: logger.state_dict()}, see fulmen.train.loggers

Written atomically: to a temporary file in the same folder, flushed, then renamed over the real
name, so a crash never leaves a half-written file under the checkpoint's name.
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

import torch

from fulmen.__about__ import __version__
from fulmen.train import _paths

if TYPE_CHECKING:
    from fulmen.train.trainer import Trainer

LIGHTNING_COMPAT_VERSION = "2.6.0"


def logger_keys(loggers: list[Any]) -> list[str]:
    """``"CSVLogger"``, ``"CSVLogger#1"``...: the key of each logger in the ``loggers`` entry."""
    seen: Counter[str] = Counter()
    keys = []
    for logger in loggers:
        name = type(logger).__name__
        keys.append(name if seen[name] == 0 else f"{name}#{seen[name]}")
        seen[name] += 1
    return keys


def rng_states() -> dict[str, Any]:
    """The generators' states as tensors, lists and numbers only, so that a checkpoint loads
    with ``torch.load(path)`` (torch's ``weights_only=True`` default) and restores exactly."""
    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    keys = np.asarray(keys)  # (the stubs type the tuple loosely)
    states: dict[str, Any] = {
        "python": random.getstate(),  # (version, tuple of ints, float or None)
        "numpy": [
            str(name),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    cuda_used = torch.cuda.is_available() and torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
    if cuda_used:
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    import numpy as np

    if "python" in states:
        random.setstate(states["python"])
    if "numpy" in states:
        name, keys, pos, has_gauss, cached = states["numpy"]
        keys = keys.cpu().numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
    if "torch" in states:
        # a checkpoint loaded onto a GPU brings these there; they belong on the CPU
        torch.set_rng_state(states["torch"].cpu())
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["torch.cuda"]])


def dump_checkpoint(trainer: Trainer, weights_only: bool = False) -> dict[str, Any]:
    """The checkpoint dict of ``trainer``'s current state (calls the on_save_checkpoint hooks)."""
    module = trainer.lightning_module
    checkpoint: dict[str, Any] = {
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "pytorch-lightning_version": LIGHTNING_COMPAT_VERSION,
        "fulmen_version": __version__,
        "state_dict": module.state_dict(),
        "loops": {"fit_loop": dataclasses.asdict(trainer._loop_state())},
    }
    if not weights_only:
        checkpoint["callbacks"] = {
            cb.state_key: cb.state_dict() for cb in trainer.callbacks if cb.state_dict()
        }
        checkpoint["optimizer_states"] = [opt.state_dict() for opt in trainer.optimizers]
        checkpoint["lr_schedulers"] = [
            config.scheduler.state_dict() for config in trainer.lr_scheduler_configs
        ]
        checkpoint["precision"] = trainer.precision_plugin.state_dict()
        checkpoint["rng_states"] = rng_states()
        checkpoint["loggers"] = {
            key: getattr(logger, "state_dict")()  # noqa: B009  (optional, outside the protocol)
            for key, logger in zip(logger_keys(trainer.loggers), trainer.loggers, strict=True)
            if callable(getattr(logger, "state_dict", None))
        }
    if module.hparams:
        checkpoint["hparams_name"] = "kwargs"
        checkpoint["hyper_parameters"] = dict(module.hparams)
    datamodule = trainer.datamodule
    if datamodule is not None:
        if datamodule.hparams:
            checkpoint["datamodule_hyper_parameters"] = dict(datamodule.hparams)
        checkpoint["datamodule"] = datamodule.state_dict()
        datamodule.on_save_checkpoint(checkpoint)
    if not weights_only:
        for cb in trainer.callbacks:
            trainer._hooks.call_one(cb, "on_save_checkpoint", checkpoint)
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def save_atomically(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = _paths.expand(path)
    if _paths.is_remote(path):  # fsspec: the remote store makes the whole file appear at close
        _paths.makedirs(path.rsplit("/", 1)[0])
        with _paths.open_file(path, "wb") as remote:
            torch.save(checkpoint, remote)
        return
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ckpt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike[str], device: torch.device) -> dict[str, Any]:
    path = _paths.expand(path)
    if not _paths.isfile(path):
        raise FileNotFoundError(f"fit(ckpt_path={path!r}): no such checkpoint file")
    # weights_only=False: a module's on_save_checkpoint may add any object (ours need not: they
    # load with torch's weights_only=True default too, see rng_states).
    checkpoint: dict[str, Any]
    if _paths.is_remote(path):
        with _paths.open_file(path, "rb") as remote:
            checkpoint = torch.load(remote, map_location=device, weights_only=False)
    else:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    if "state_dict" not in checkpoint:
        raise ValueError(f"{os.fspath(path)!r} is not a checkpoint: it has no 'state_dict'")
    return checkpoint


def restore_loggers(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Give each logger its entry of ``checkpoint["loggers"]`` (first, before any logging)."""
    states = checkpoint.get("loggers") or {}
    for key, logger in zip(logger_keys(trainer.loggers), trainer.loggers, strict=True):
        loader = getattr(logger, "load_state_dict", None)
        if key in states and callable(loader):
            loader(states[key])


def restore_module(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    module = trainer.lightning_module
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    datamodule = trainer.datamodule
    if datamodule is not None:
        datamodule.on_load_checkpoint(checkpoint)
        if "datamodule" in checkpoint:
            datamodule.load_state_dict(checkpoint["datamodule"])


def restore_training_state(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Callbacks, optimizers, schedulers, precision and loop position (fit only)."""
    states = checkpoint.get("callbacks") or {}
    for cb in trainer.callbacks:
        trainer._hooks.call_one(cb, "on_load_checkpoint", checkpoint)
        if cb.state_key in states:
            cb.load_state_dict(states[cb.state_key])
    if "optimizer_states" not in checkpoint:
        raise ValueError(
            "the checkpoint holds weights only (save_weights_only=True): it cannot resume "
            "training; load the weights with load_from_checkpoint instead"
        )
    for opt, state in zip(trainer.optimizers, checkpoint["optimizer_states"], strict=False):
        opt.load_state_dict(state)
    for config, state in zip(
        trainer.lr_scheduler_configs, checkpoint["lr_schedulers"], strict=False
    ):
        config.scheduler.load_state_dict(state)
    trainer.precision_plugin.load_state_dict(checkpoint.get("precision") or {})
    trainer._restore_loop_state(checkpoint.get("loops", {}).get("fit_loop") or {}, checkpoint)


def resolve_and_load(trainer: Trainer, ckpt_path: Any, stage: str) -> dict[str, Any] | None:
    """``ckpt_path``: a path, "best" or "last" -> the loaded checkpoint (None: nothing to load)."""
    path: str | None
    if ckpt_path == "best":
        cb = trainer.checkpoint_callback
        if cb is None:
            raise ValueError(
                f'{stage}(ckpt_path="best") needs a ModelCheckpoint callback: none is '
                "configured (enable_checkpointing=False?)"
            )
        path = cb.best_model_path or None
        if not path:
            raise ValueError(
                f'{stage}(ckpt_path="best"): the ModelCheckpoint has no best checkpoint yet '
                "(did it have a monitor, and did fit save one?)"
            )
    elif ckpt_path == "last":
        path = None
        for cb in trainer.checkpoint_callbacks:
            path = cb._find_last_checkpoint(trainer) or path
        if path is None:
            warnings.warn(
                f'{stage}(ckpt_path="last"): no last checkpoint was found; starting from scratch',
                UserWarning,
                stacklevel=4,
            )
            return None
    else:
        path = os.fspath(ckpt_path)
    trainer.ckpt_path = path
    return load(path, trainer.strategy.root_device)
