"""``strategy="ddp_spawn"``: ``torch.multiprocessing`` starts one process per local device.

The Trainer's work (``fn``, a bound method of the Trainer, with the model among its arguments) is
pickled into every process, as in Lightning, so the module, datamodule, callbacks and loggers must
be picklable. Rank zero sends back what the caller sees afterwards: the return value, the trained
weights (loaded into the caller's model), the loop position, the logged metrics and the checkpoint
paths. When a process raises, ``torch.multiprocessing`` stops the others and re-raises the error
here with that process's traceback. What it starts is logged to ``fulmen.train`` (INFO).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from typing import Any

from fulmen.train import _launch
from fulmen.train.states import TrainerStatus

_log = logging.getLogger("fulmen.train")


def run(strategy: Any, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import torch
    import torch.multiprocessing as mp

    cluster = strategy.cluster
    port = cluster.main_port or _launch.free_port()
    _log.info(
        "ddp_spawn: starting %d processes (node %d), rendezvous %s:%d",
        len(strategy.device_indexes),
        strategy.node_rank,
        cluster.main_address,
        port,
    )
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    processes = mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
        _worker,
        # Plain pickle bytes: torch.multiprocessing would put the weights in shared memory, and
        # every process would then update the same tensors.
        args=(pickle.dumps((fn, args, kwargs)), cluster.main_address, port, queue),
        nprocs=len(strategy.device_indexes),
        start_method="spawn",
        join=False,
    )
    while not processes.join():  # raises ProcessRaisedException/ProcessExitedException
        pass
    returned = torch.load(io.BytesIO(queue.get()), weights_only=False)
    trainer = fn.__self__
    model = args[1] if len(args) > 1 and args[1] is not None else trainer.lightning_module
    model.load_state_dict(returned["state_dict"])
    trainer.lightning_module = model
    model.trainer = trainer
    trainer.current_epoch = returned["current_epoch"]
    trainer.global_step = returned["global_step"]
    trainer._logged_metrics = returned["logged_metrics"]
    trainer.state.status = TrainerStatus.FINISHED
    for cb, paths in zip(trainer.checkpoint_callbacks, returned["checkpoints"], strict=False):
        cb.best_model_path, cb.last_model_path = paths
    return returned["result"]


def _worker(
    local_rank: int,
    payload: bytes,
    address: str,
    port: int,
    queue: Any,
) -> None:
    import torch
    import torch.distributed as dist

    fn, args, kwargs = pickle.loads(payload)
    trainer = fn.__self__
    strategy = trainer.strategy
    devices = len(strategy.device_indexes)
    node_rank = strategy.node_rank
    rank = node_rank * devices + local_rank
    os.environ.update(
        {
            "MASTER_ADDR": address,
            "MASTER_PORT": str(port),
            "LOCAL_RANK": str(local_rank),
            "RANK": str(rank),
            "NODE_RANK": str(node_rank),
            "WORLD_SIZE": str(strategy.world_size),
        }
    )
    strategy._set_ranks(rank, local_rank, node_rank, strategy.world_size)
    strategy.init_process_group(address, port)
    try:
        result = fn(*args, **kwargs)
        if rank == 0:
            module = trainer.lightning_module
            buffer = io.BytesIO()  # bytes, not shared tensors: those die with this process
            torch.save(
                {
                    "result": result,
                    "state_dict": {k: v.cpu() for k, v in module.state_dict().items()},
                    "current_epoch": trainer.current_epoch,
                    "global_step": trainer.global_step,
                    "logged_metrics": dict(trainer._logged_metrics),
                    "checkpoints": [
                        (cb.best_model_path, cb.last_model_path)
                        for cb in trainer.checkpoint_callbacks
                    ],
                },
                buffer,
            )
            queue.put(buffer.getvalue())
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other ranks may never reach it
        raise
    from fulmen.train.strategy import _end_process_group

    _end_process_group()  # every rank waits for the others, then the group ends in order
