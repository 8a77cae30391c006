"""DDP's pieces in one process: launcher detection, strategy selection, samplers, batched sync."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from fulmen.train._data_parallel import UnrepeatedDistributedSampler, with_distributed_sampler
from fulmen.train._launch import detect_environment, first_host
from fulmen.train.strategy import DDPStrategy, SingleDeviceStrategy, resolve_strategy
from fulmen.train.utilities import rank_zero_only
from tests.train.helpers import Regressor, loader, quiet_trainer, regression_data
from tests.train.test_strategy import TwoRanks

LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "TORCHELASTIC")
LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK")


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith(LAUNCHER_PREFIXES) or key in LAUNCHER_VARS:
            monkeypatch.delenv(key)
    monkeypatch.setattr(rank_zero_only, "rank", 0)


def test_detects_each_launcher() -> None:
    torchrun = detect_environment(
        2,
        {
            "RANK": "3",
            "GROUP_RANK": "1",
            "LOCAL_RANK": "1",
            "LOCAL_WORLD_SIZE": "2",
            "WORLD_SIZE": "4",
            "MASTER_ADDR": "h0",
            "MASTER_PORT": "1234",
        },
    )
    assert (torchrun.launcher, torchrun.global_rank, torchrun.local_rank) == ("torchelastic", 3, 1)
    assert (torchrun.node_rank, torchrun.world_size, torchrun.main_port) == (1, 4, 1234)
    slurm = detect_environment(
        2,
        {
            "SLURM_NTASKS": "4",
            "SLURM_PROCID": "2",
            "SLURM_LOCALID": "0",
            "SLURM_NODEID": "1",
            "SLURM_NODELIST": "gpu[07-08]",
            "SLURM_JOB_ID": "1234567",
        },
    )
    assert (slurm.launcher, slurm.global_rank, slurm.node_rank, slurm.world_size) == (
        "slurm",
        2,
        1,
        4,
    )
    assert (slurm.main_address, slurm.main_port) == ("gpu07", 14567)
    ompi = detect_environment(
        2,
        {
            "OMPI_COMM_WORLD_SIZE": "4",
            "OMPI_COMM_WORLD_RANK": "3",
            "OMPI_COMM_WORLD_LOCAL_RANK": "1",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
        },
    )
    assert (ompi.launcher, ompi.global_rank, ompi.local_rank, ompi.node_rank) == ("mpi", 3, 1, 1)
    pmi = detect_environment(2, {"PMI_SIZE": "2", "PMI_RANK": "1"})
    assert (pmi.launcher, pmi.global_rank, pmi.local_rank, pmi.main_port) == ("mpi", 1, 1, 29500)
    child = detect_environment(2, {"LOCAL_RANK": "1", "MASTER_PORT": "99", "WORLD_SIZE": "2"})
    assert (child.launcher, child.global_rank, child.world_size) == ("subprocess", 1, 2)
    none = detect_environment(2, {})
    assert (none.launcher, none.creates_processes_externally, none.main_port) == ("none", False, 0)
    # one SLURM task (an interactive allocation) is no launcher: fulmen starts the processes
    assert detect_environment(2, {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).launcher == "none"


def test_first_host_of_a_slurm_nodelist() -> None:
    assert first_host("node[03-05,7],gpu1") == "node03"
    assert first_host("a1,a2") == "a1"
    assert first_host("solo") == "solo"


def test_auto_picks_ddp_for_two_devices_and_sets_the_rank_loggers_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(resolve_strategy("auto", "cpu", 1), SingleDeviceStrategy)
    strategy = resolve_strategy("auto", "cpu", 2)
    assert isinstance(strategy, DDPStrategy)
    assert (strategy.world_size, strategy.global_rank, strategy.is_global_zero) == (2, 0, True)
    assert resolve_strategy("ddp", "cpu", 2, num_nodes=2).world_size == 4
    for key, value in {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1"}.items():
        monkeypatch.setenv(key, value)
    joined = resolve_strategy(DDPStrategy(static_graph=True), "cpu", 2)
    assert isinstance(joined, DDPStrategy)
    assert (joined.global_rank, joined.local_rank, rank_zero_only.rank) == (1, 1, 1)
    assert joined.ddp_kwargs["static_graph"] is True
    auto = resolve_strategy("auto", "cpu", "auto")  # devices="auto": what the launcher started
    assert auto.world_size == 2
    with pytest.raises(ValueError, match=r"asks for 3 processes.*slurm.*started 2"):
        resolve_strategy("ddp", "cpu", 3)
    with pytest.raises(ValueError, match="start_method='fork'"):
        DDPStrategy(start_method="fork")


def test_trainer_reports_devices_and_ranks() -> None:
    trainer = quiet_trainer(accelerator="cpu", devices=2)
    assert isinstance(trainer.strategy, DDPStrategy)
    assert (trainer.world_size, trainer.num_devices, trainer.num_nodes) == (2, 2, 1)
    assert trainer.is_global_zero


def test_distributed_sampler_injection_keeps_the_shuffle_choice() -> None:
    shuffled = with_distributed_sampler(loader(shuffle=True, batch_size=4), "fit", 2, 1)
    assert isinstance(shuffled.sampler, DistributedSampler)
    assert shuffled.sampler.shuffle
    assert (shuffled.sampler.rank, shuffled.batch_size, len(shuffled)) == (1, 4, 8)
    ordered = with_distributed_sampler(loader(batch_size=4), "validate", 2, 0)
    assert not ordered.sampler.shuffle
    assert [int(i) for i in ordered.sampler][:3] == [0, 2, 4]
    predict = with_distributed_sampler(DataLoader(regression_data(5)), "predict", 2, 1)
    assert isinstance(predict.sampler, UnrepeatedDistributedSampler)
    assert list(predict.sampler) == [1, 3]

    class Stream(IterableDataset[int]):
        def __iter__(self) -> Any:
            return iter(range(3))

    stream = DataLoader(Stream())
    assert with_distributed_sampler(stream, "fit", 2, 0) is stream
    strategy = DDPStrategy()
    strategy.use_distributed_sampler = False
    plain = loader()
    assert strategy.process_dataloader(plain, "fit") is plain


def test_epoch_end_sync_is_one_collective_per_reduce_op() -> None:
    class ManyMetrics(Regressor):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            for i in range(10):
                self.log(f"mean{i}", float(i), sync_dist=True)
            self.log("s", 1.0, sync_dist=True, reduce_fx="sum")
            self.log("hi", float(batch_idx), sync_dist=True, reduce_fx="max")
            self.log("lo", float(batch_idx), sync_dist=True, reduce_fx="min")

    strategy = TwoRanks()
    trainer = quiet_trainer(strategy=strategy)
    results = trainer.validate(ManyMetrics(), loader(n=16), verbose=False)
    assert sorted(strategy.reduced) == ["max", "min", "sum"]  # 13 metrics, 3 all-reduces
    assert results[0]["mean3"] == 3.0
    assert results[0]["s"] == 4.0  # 2 batches here, doubled by the stand-in's "all-reduce"
    assert (results[0]["hi"], results[0]["lo"]) == (1.0, 0.0)
    strategy.reduced.clear()
    assert trainer.callback_metrics["s"] == torch.tensor(4.0)  # read again: no collective
    assert strategy.reduced == []


def test_the_local_launcher_refuses_to_rerun_a_test_session() -> None:
    from fulmen.train._launch import _command

    with pytest.raises(RuntimeError, match=r"not started from a script file.*ddp_spawn"):
        _command()


def test_the_launcher_s_decisions_go_to_the_fulmen_train_logger(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import sys

    from fulmen.train import _launch

    caplog.set_level(logging.DEBUG, logger="fulmen.train")
    cluster = detect_environment(2, {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_ID": "7"})
    assert any(
        r.name == "fulmen.train" and "launcher slurm, rank 1" in r.getMessage()
        for r in caplog.records
    )
    # a real child process: this interpreter doing nothing, in place of this test session again
    monkeypatch.setattr(_launch, "_command", lambda: [sys.executable, "-c", "pass"])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # launch() wraps it: put it back
    launcher = _launch.LocalLauncher(_launch.detect_environment(2, {}), 2, 1)
    try:
        launcher.launch("127.0.0.1", 29999)
    finally:
        launcher._stopping = True  # the watcher thread and the exit hook stand down
        for child in launcher.children:
            child.wait()
    started = [r for r in caplog.records if "started local rank 1 of 2" in r.getMessage()]
    assert len(started) == 1
    assert started[0].levelno == logging.INFO
    assert "127.0.0.1:29999" in started[0].getMessage()
    assert cluster.launcher == "slurm"
