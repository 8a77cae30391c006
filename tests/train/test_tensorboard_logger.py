"""TensorBoardLogger: real event files written through torch.utils.tensorboard and read back
with tensorboard's own reader; a clear error when tensorboard is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fulmen.loggers import CSVLogger, TensorBoardLogger
from tests.train.helpers import Regressor, loader, quiet_trainer


def _scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir)
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_fit_writes_event_files_that_tensorboard_reads_back(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = quiet_trainer(logger=logger, max_epochs=2, log_every_n_steps=2)
    trainer.fit(Regressor(lr=0.05), loader(32), loader(16))
    assert logger.log_dir == str(tmp_path / "tb" / "version_0")
    assert list(Path(logger.log_dir).glob("events.out.tfevents.*"))
    scalars = _scalars(logger.log_dir)
    assert [step for step, _ in scalars["train_loss"]] == [1, 3, 5, 7]
    assert len(scalars["val_loss"]) == 2
    assert scalars["hp_metric"] == [(0, -1.0)]  # default_hp_metric, as Lightning
    assert "lr: 0.05" in (Path(logger.log_dir) / "hparams.yaml").read_text()
    again = TensorBoardLogger(tmp_path, name="tb", prefix="run", sub_dir="extra")
    again.log_metrics({"x": 1.5}, step=4)
    again.finalize("success")
    assert again.log_dir == str(tmp_path / "tb" / "version_1" / "extra")
    assert _scalars(again.log_dir) == {"run-x": [(4, 1.5)]}


def test_without_tensorboard_the_error_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"`tensorboard` package.*pip install"):
        TensorBoardLogger(tmp_path)


def test_the_default_logger_stays_fulmens_own(tmp_path: Path) -> None:
    trainer = quiet_trainer(logger=None, default_root_dir=tmp_path)
    assert isinstance(trainer.logger, CSVLogger)
