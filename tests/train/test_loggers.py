"""CSVLogger's files and versions, the Logger protocol, rank-zero behaviour."""

from __future__ import annotations

import csv
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

import fulmen as pl
from fulmen.train.loggers import CSVLogger, DummyExperiment, Logger, save_hparams_to_yaml
from fulmen.train.utilities import rank_zero_only


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_paths_and_versions_count_up_from_existing_folders(tmp_path: Path) -> None:
    first = CSVLogger(tmp_path)
    assert first.version == 0
    assert first.root_dir == str(tmp_path / "lightning_logs")
    assert first.log_dir == str(tmp_path / "lightning_logs" / "version_0")
    first.log_metrics({"a": 1.0}, step=0)
    first.finalize("success")
    (tmp_path / "lightning_logs" / "version_7").mkdir()
    (tmp_path / "lightning_logs" / "not_a_version").mkdir()
    assert CSVLogger(tmp_path).version == 8
    named = CSVLogger(tmp_path, name="exp", version="trial")
    assert named.log_dir == str(tmp_path / "exp" / "trial")
    assert CSVLogger(tmp_path, name="").root_dir == str(tmp_path)
    assert isinstance(first, Logger)


def test_metrics_csv_has_a_step_column_and_new_columns_rewrite_the_header(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=2)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.log_metrics({"loss": 0.5}, step=1)  # flushed here
    path = Path(logger.log_dir) / "metrics.csv"
    assert read(path) == [{"loss": "1.0", "step": "0"}, {"loss": "0.5", "step": "1"}]
    logger.log_metrics({"val": 3.0}, step=2)
    logger.save()
    assert path.read_text().splitlines()[0] == "loss,step,val"
    assert read(path)[-1] == {"loss": "", "step": "2", "val": "3.0"}
    assert read(path)[0] == {"loss": "1.0", "step": "0", "val": ""}


def test_prefix_and_hparams_yaml(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, prefix="tmp")
    logger.log_hyperparams(Namespace(lr=0.1, layers=[1, 2], nested={"a": None, "b": "x y"}))
    logger.log_metrics({"test": 1.0}, step=0)
    logger.finalize("success")
    assert read(Path(logger.log_dir) / "metrics.csv") == [{"tmp-test": "1.0", "step": "0"}]
    assert (Path(logger.log_dir) / "hparams.yaml").read_text() == (
        'lr: 0.1\nlayers:\n  - 1\n  - 2\nnested:\n  a: null\n  b: "x y"\n'
    )


def test_yaml_quotes_what_would_be_misread(tmp_path: Path) -> None:
    save_hparams_to_yaml(tmp_path / "h.yaml", {"yes": True, "1x": float("nan"), "e": {}})
    assert (tmp_path / "h.yaml").read_text() == '"yes": true\n"1x": .nan\ne: {}\n'


def test_other_ranks_write_nothing_and_get_a_dummy_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = CSVLogger(tmp_path)
    assert isinstance(logger.experiment, DummyExperiment)
    logger.experiment.anything(1, x=2)  # every attribute is a do-nothing callable
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"a": 1.0}, step=0)
    logger.finalize("success")
    assert list(tmp_path.iterdir()) == []


def test_logger_argument_forms(tmp_path: Path) -> None:
    assert isinstance(pl.Trainer(default_root_dir=tmp_path, max_epochs=1).logger, CSVLogger)
    assert pl.Trainer(logger=False, max_epochs=1).loggers == []
    two = [CSVLogger(tmp_path, name="a"), CSVLogger(tmp_path, name="b")]
    trainer = pl.Trainer(logger=two, max_epochs=1)
    assert trainer.loggers == two
    assert trainer.logger is two[0]
    with pytest.raises(TypeError, match="int is not a logger"):
        pl.Trainer(logger=[3], max_epochs=1)


def test_the_trainer_does_not_read_a_loggers_properties_when_checking_it(tmp_path: Path) -> None:
    class Lazy(CSVLogger):
        @property
        def experiment(self) -> Any:
            raise AssertionError("read too early")

    logger = Lazy(tmp_path)
    # a protocol isinstance on Python 3.11 would call the property
    pl.Trainer(logger=logger, max_epochs=1)
    assert not (tmp_path / "lightning_logs").exists()
