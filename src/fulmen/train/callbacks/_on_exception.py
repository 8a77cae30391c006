"""OnExceptionCheckpoint: save a checkpoint when a run stops on an exception (Ctrl-C included)."""

import os
from typing import TYPE_CHECKING

from fulmen.train.callback import Callback

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer

__all__ = ["OnExceptionCheckpoint"]


class OnExceptionCheckpoint(Callback):
    """On any exception in fit/validate/test/predict, ``trainer.save_checkpoint`` to
    ``dirpath/filename.ckpt`` (``filename`` without the extension; ``~`` is expanded)."""

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str | os.PathLike[str], filename: str = "on_exception") -> None:
        if not filename:
            raise ValueError("The filename cannot be empty")
        self.dirpath = os.path.realpath(os.path.expanduser(os.fspath(dirpath)))
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def on_exception(
        self, trainer: "Trainer", pl_module: "LightningModule", exception: BaseException
    ) -> None:
        trainer.save_checkpoint(self.ckpt_path)
