"""Strategies: where the model lives and how processes talk. One object, named by a string.

The loop only talks to a strategy through the ``Strategy`` protocol below and never asks which one
it has. There are two: ``SingleDeviceStrategy`` (one process, one device), what
``strategy="auto"`` picks for one device, and ``DDPStrategy`` (one process per device, gradients
all-reduced), named by ``"ddp"`` (the processes started by the launcher) or ``"ddp_spawn"``
(multiprocessing's spawn); ``resolve_strategy`` turns the Trainer's arguments into one of them.

What the loop asks of a strategy, and when:

- ``setup_module(module)`` once per run, after the module is on ``root_device``: returns the model
  to call for training (DDP wraps it here);
- ``training_step(module, batch, batch_idx)`` for every training step (DDP routes it through the
  wrapped model's forward, as Lightning does, so gradients are all-reduced);
- ``process_dataloader(dataloader, stage)`` for every dataloader (DDP injects a sampler);
- ``batch_to_device(batch)`` for every batch;
- ``backward_sync(should_sync)`` around every backward (DDP skips the all-reduce with ``no_sync``
  on batches that only accumulate);
- ``reduce(tensor, reduce_fx)`` for ``self.log(..., sync_dist=True)``; ``reduce_boolean_decision``
  for ``should_stop``; ``barrier``, ``broadcast``, ``all_gather`` for everything else;
- ``teardown()`` once at the end.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist

from fulmen.train import _data_parallel, _launch, _spawn
from fulmen.train._hooks import takes_batch_idx
from fulmen.train.utilities import rank_zero_only

__all__ = [
    "DDPStrategy",
    "SingleDeviceStrategy",
    "Strategy",
    "move_to_device",
    "resolve_strategy",
    "select_device",
]


@runtime_checkable
class Strategy(Protocol):
    """What the Trainer needs from a strategy (``SingleDeviceStrategy``, ``DDPStrategy``)."""

    root_device: torch.device
    global_rank: int
    local_rank: int
    node_rank: int
    world_size: int

    @property
    def is_global_zero(self) -> bool: ...

    def launch(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module: ...

    def training_step(self, module: Any, batch: Any, batch_idx: int) -> Any: ...

    def process_dataloader(self, dataloader: Any, stage: str) -> Any: ...

    def batch_to_device(self, batch: Any) -> Any: ...

    def backward_sync(self, should_sync: bool) -> contextlib.AbstractContextManager[Any]: ...

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor: ...

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool: ...

    def barrier(self, name: str | None = None) -> None: ...

    def broadcast(self, obj: Any, src: int = 0) -> Any: ...

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor: ...

    def teardown(self) -> None: ...


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``; other values stay as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if hasattr(batch, "to") and callable(batch.to) and not isinstance(batch, type):
        with contextlib.suppress(TypeError):
            return batch.to(device)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, Sequence) and not isinstance(batch, str | bytes):
        return type(batch)(move_to_device(v, device) for v in batch)  # type: ignore[call-arg]
    return batch


_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
_NULL_CONTEXT = contextlib.nullcontext()  # reusable: entering it does nothing


def parse_devices(accelerator: str, devices: Any) -> tuple[str, list[int]]:  # noqa: PLR0912
    """``accelerator``/``devices`` -> ("cpu" | "cuda" | "mps", the device indexes on this node).

    ``devices`` is a count (``2``), a list of indexes (``[0, 2]``), a string of either (``"2"``,
    ``"0,2"``), or ``"auto"``/``-1`` (every GPU; one CPU process). On the CPU, ``devices=N`` means
    N processes. A clear error names what is wrong.
    """
    if not isinstance(accelerator, str) or accelerator.lower() not in _ACCELERATORS:
        raise ValueError(
            f"Trainer(accelerator={accelerator!r}) is not supported; "
            f"choose one of {', '.join(repr(a) for a in _ACCELERATORS)}"
        )
    kind = accelerator.lower()
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "gpu":
        kind = "cuda"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Trainer(accelerator={accelerator!r}): no CUDA device is available")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError("Trainer(accelerator='mps'): no MPS device is available")
    available = torch.cuda.device_count() if kind == "cuda" else 1
    indexes: list[int]
    try:
        if isinstance(devices, list | tuple):
            indexes = [int(d) for d in devices]
        elif isinstance(devices, str) and devices in ("auto", "-1"):
            indexes = list(range(available))
        elif isinstance(devices, str) and "," in devices:
            indexes = [int(p) for p in devices.split(",") if p.strip()]
        elif isinstance(devices, int | str) and not isinstance(devices, bool):
            count = int(devices)
            indexes = list(range(available)) if count == -1 else list(range(count))
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(
            f"Trainer(devices={devices!r}) is not understood; pass a count (2), a list of "
            "indexes ([0, 1]), a string of either ('2', '0,1'), or 'auto'"
        ) from None
    if not indexes:
        raise ValueError(f"Trainer(devices={devices!r}) selects no device")
    if kind == "cuda" and max(indexes) >= available:
        raise ValueError(
            f"Trainer(devices={devices!r}) asks for CUDA devices {indexes}; "
            f"this machine has {available}"
        )
    if kind == "mps" and len(indexes) > 1:
        raise ValueError(f"Trainer(accelerator='mps', devices={devices!r}): MPS has one device")
    if kind == "cpu" and isinstance(devices, list | tuple) and len(devices) == 1:
        indexes = [0]  # devices=[0] on the CPU: one process
    return kind, indexes


def _device(kind: str, index: int) -> torch.device:
    return torch.device(kind, index) if kind == "cuda" else torch.device(kind)


def select_device(accelerator: str, devices: Any) -> torch.device:
    """The one device for ``accelerator``/``devices``; more than one is an error here."""
    kind, indexes = parse_devices(accelerator, devices)
    if len(indexes) != 1:
        raise ValueError(
            f"Trainer(devices={devices!r}) asks for {len(indexes)} devices; use strategy='ddp' "
            "(or 'auto') for more than one"
        )
    return _device(kind, indexes[0])


class SingleDeviceStrategy:
    """One process, one device: every collective is the identity."""

    name = "single_device"
    global_rank = 0
    local_rank = 0
    node_rank = 0
    world_size = 1

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.root_device = torch.device(device)
        # DataLoader batches arrive on the CPU: on a CPU device there is nothing to move.
        self._moves = self.root_device.type != "cpu"
        self._with_idx = True  # does the module's training_step take batch_idx? (setup_module)

    @property
    def is_global_zero(self) -> bool:
        return True

    def launch(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        # looked at once per run: ``training_step(self, batch)`` is called without batch_idx
        self._with_idx = takes_batch_idx(getattr(module, "training_step", None))
        return module

    def training_step(self, module: Any, batch: Any, batch_idx: int) -> Any:
        if self._with_idx:
            return module.training_step(batch, batch_idx)
        return module.training_step(batch)

    def process_dataloader(self, dataloader: Any, stage: str) -> Any:
        return dataloader

    def batch_to_device(self, batch: Any) -> Any:
        return move_to_device(batch, self.root_device) if self._moves else batch

    def backward_sync(self, should_sync: bool) -> contextlib.AbstractContextManager[Any]:
        return _NULL_CONTEXT

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor:
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def barrier(self, name: str | None = None) -> None:
        return None

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
        return tensor

    def teardown(self) -> None:
        return None


class DDPStrategy:
    """Distributed data parallel: one process per device, gradients all-reduced by torch's DDP.

    ``DDPStrategy(find_unused_parameters=False, static_graph=False, gradient_as_bucket_view=True,
    timeout=timedelta(minutes=30), process_group_backend=None, start_method="popen",
    **ddp_kwargs)``: the first three and ``ddp_kwargs`` go to
    ``torch.nn.parallel.DistributedDataParallel``;
    ``timeout`` bounds every collective (the backstop when a process hangs);
    ``process_group_backend`` is "nccl" on CUDA and "gloo" elsewhere unless given;
    ``start_method`` is "popen" (``strategy="ddp"``: the script runs again, or a launcher such as
    torchrun or srun started every process) or "spawn" (``strategy="ddp_spawn"``:
    ``torch.multiprocessing`` starts the processes and runs the Trainer's work in them).
    See docs/distributed.md and ``fulmen.train._launch``.
    """

    def __init__(
        self,
        find_unused_parameters: bool = False,
        static_graph: bool = False,
        gradient_as_bucket_view: bool = True,
        timeout: timedelta = timedelta(minutes=30),
        process_group_backend: str | None = None,
        start_method: str = "popen",
        **ddp_kwargs: Any,
    ) -> None:
        if start_method not in ("popen", "spawn"):
            raise ValueError(
                f"DDPStrategy(start_method={start_method!r}) is unknown; choose 'popen' or 'spawn'"
            )
        self.name = "ddp" if start_method == "popen" else "ddp_spawn"
        self.start_method = start_method
        self.timeout = timeout
        self.process_group_backend = process_group_backend
        self.ddp_kwargs = {
            "find_unused_parameters": find_unused_parameters,
            "static_graph": static_graph,
            "gradient_as_bucket_view": gradient_as_bucket_view,
            **ddp_kwargs,
        }
        self.use_distributed_sampler = True
        self.kind = "cpu"
        self.device_indexes = [0]
        self.num_nodes = 1
        self.cluster: _launch.Cluster | None = None
        self.global_rank = self.local_rank = self.node_rank = 0
        self.world_size = 1
        self.root_device = torch.device("cpu")
        self._model: torch.nn.parallel.DistributedDataParallel | None = None
        self._with_idx = True  # does the module's training_step take batch_idx? (setup_module)

    # ---------------------------------------------------------------- where this process stands
    def configure(
        self, kind: str, indexes: list[int], num_nodes: int, use_distributed_sampler: bool
    ) -> None:
        """Called by the Trainer: the devices of each node, and this process's ranks."""
        self.kind, self.device_indexes, self.num_nodes = kind, indexes, num_nodes
        self.use_distributed_sampler = use_distributed_sampler
        devices = len(indexes)
        cluster = _launch.detect_environment(devices)
        expected = devices * num_nodes
        if not cluster.creates_processes_externally:
            cluster = dataclasses.replace(cluster, world_size=expected)
        elif cluster.world_size != expected:
            raise ValueError(
                f"Trainer(devices={devices}, num_nodes={num_nodes}) asks for {expected} "
                f"processes, but the launcher ({cluster.launcher}) started "
                f"{cluster.world_size}; make them agree"
            )
        self.cluster = cluster
        self._set_ranks(cluster.global_rank, cluster.local_rank, cluster.node_rank, expected)

    def _set_ranks(self, global_rank: int, local_rank: int, node_rank: int, world: int) -> None:
        self.global_rank, self.local_rank, self.node_rank = global_rank, local_rank, node_rank
        self.world_size = world
        index = self.device_indexes[local_rank % len(self.device_indexes)]
        self.root_device = _device(self.kind, index)
        # Loggers and rank_zero_only read this: it must be right before any logger is touched.
        rank_zero_only.rank = global_rank

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    def launch(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Start (or join) the processes, then run ``fn`` (the Trainer's work) here."""
        cluster = self.cluster
        if cluster is None:
            raise RuntimeError("DDPStrategy.launch before configure (pass it to a Trainer)")
        if self.start_method == "spawn" and not dist.is_initialized():
            if cluster.creates_processes_externally:
                raise ValueError(
                    f"strategy='ddp_spawn' cannot run under a launcher ({cluster.launcher}) that "
                    "started the processes already; use strategy='ddp'"
                )
            return _spawn.run(self, fn, args, kwargs)
        if not dist.is_initialized():
            address, port = cluster.main_address, cluster.main_port
            store = None
            if not cluster.creates_processes_externally:
                if not port:
                    if self.num_nodes > 1:
                        raise ValueError(
                            f"Trainer(num_nodes={self.num_nodes}) without a launcher: set "
                            "MASTER_ADDR, MASTER_PORT and NODE_RANK on every node (or use "
                            "torchrun or SLURM)"
                        )
                    # The rendezvous server listens before the children start, on a port the OS
                    # picks: no window in which another program could take a "free" port.
                    store = dist.TCPStore(  # type: ignore[attr-defined]
                        address, 0, self.world_size, True, self.timeout, wait_for_workers=False
                    )
                    port = store.port
                _launch.LocalLauncher(cluster, len(self.device_indexes), self.num_nodes).launch(
                    address, port
                )
                # Trainers made later in this process join the same group, as the children do.
                os.environ.update(
                    {
                        "MASTER_ADDR": address,
                        "MASTER_PORT": str(port),
                        "LOCAL_RANK": "0",
                        "RANK": str(self.global_rank),
                        "NODE_RANK": str(self.node_rank),
                        "WORLD_SIZE": str(self.world_size),
                    }
                )
            else:
                _launch.watch_parent()
            self.init_process_group(address, port, store)
        try:
            return fn(*args, **kwargs)
        except BaseException:
            _EXIT["clean"] = False  # no barrier at exit: the other ranks may never reach it
            raise

    def init_process_group(self, address: str, port: int, store: Any = None) -> None:
        if self.kind == "cuda":
            torch.cuda.set_device(self.root_device)
        backend = self.process_group_backend or ("nccl" if self.kind == "cuda" else "gloo")
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = address, str(port)
        launcher = self.cluster.launcher if self.cluster is not None else "none"
        if store is None and launcher in ("none", "subprocess"):
            # fulmen's own processes: local rank zero's store is listening already
            store = dist.TCPStore(  # type: ignore[attr-defined]
                address, port, self.world_size, self.global_rank == 0, self.timeout
            )
        dist.init_process_group(
            backend,
            init_method=None if store is not None else "env://",  # env://: torchrun's own store
            store=store,
            rank=self.global_rank,
            world_size=self.world_size,
            timeout=self.timeout,
        )
        atexit.register(_end_process_group)

    # ---------------------------------------------------------------- the loop's calls
    def setup_module(self, module: torch.nn.Module) -> torch.nn.Module:
        self._model = None  # wrapped at the first training step, after configure_model/restore
        self._with_idx = takes_batch_idx(getattr(module, "training_step", None))
        return module

    def training_step(self, module: Any, batch: Any, batch_idx: int) -> Any:
        with_idx = self._with_idx
        if not torch.is_grad_enabled():
            return (
                module.training_step(batch, batch_idx) if with_idx else module.training_step(batch)
            )
        model = self._model
        if model is None:
            device_ids = [self.root_device.index] if self.kind == "cuda" else None
            # A collective: DDP broadcasts rank zero's weights, so every rank starts the same.
            model = self._model = torch.nn.parallel.DistributedDataParallel(
                _TrainingStep(module, with_idx), device_ids=device_ids, **self.ddp_kwargs
            )
        # Through DDP's forward, so that backward all-reduces the gradients (Lightning does the
        # same): the wrapped module's forward is the LightningModule's training_step.
        return model(batch, batch_idx)

    def process_dataloader(self, dataloader: Any, stage: str) -> Any:
        if not self.use_distributed_sampler:
            return dataloader
        return _data_parallel.with_distributed_sampler(
            dataloader, stage, self.world_size, self.global_rank
        )

    def batch_to_device(self, batch: Any) -> Any:
        return move_to_device(batch, self.root_device) if self.kind != "cpu" else batch

    def backward_sync(self, should_sync: bool) -> contextlib.AbstractContextManager[Any]:
        model = self._model
        if should_sync or model is None:
            return _NULL_CONTEXT
        return model.no_sync()  # accumulate locally; the stepping batch all-reduces everything

    def reduce(self, tensor: torch.Tensor, reduce_fx: str = "mean") -> torch.Tensor:
        """All-reduce a copy of ``tensor`` (any shape): "mean", "sum", "max" or "min"."""
        op = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM}.get(reduce_fx)
        if op is None:
            op = dist.ReduceOp.MAX if reduce_fx == "max" else dist.ReduceOp.MIN
        out = tensor.detach().to(self._comm_device(), dtype=torch.float64, copy=True)
        dist.all_reduce(out, op=op)  # a collective: every rank must call it, in the same order
        if reduce_fx == "mean":
            out /= self.world_size
        return out.to(tensor.device, tensor.dtype if tensor.is_floating_point() else out.dtype)

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        votes = self.reduce(torch.tensor(float(bool(decision))), "sum")
        return bool(votes.item() == self.world_size) if all else bool(votes.item() > 0)

    def barrier(self, name: str | None = None) -> None:
        if dist.is_initialized():
            dist.barrier()

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if not dist.is_initialized():
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def all_gather(self, tensor: torch.Tensor, sync_grads: bool = False) -> torch.Tensor:
        """``tensor`` from every rank, stacked on a new first dimension (world_size, ...)."""
        if not dist.is_initialized():
            return tensor.unsqueeze(0)
        if sync_grads:
            import torch.distributed.nn.functional as dist_fn

            return torch.stack(dist_fn.all_gather(tensor.contiguous()))  # type: ignore[no-untyped-call]
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Any picklable ``obj`` from every rank, in rank order (predictions use this)."""
        if not dist.is_initialized():
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def teardown(self) -> None:
        # The process group stays: later Trainers of this script reuse it (it ends with the
        # process). The module is unwrapped so that the user's model is left as it was.
        self._model = None

    def _comm_device(self) -> torch.device:
        return self.root_device if self.kind == "cuda" else torch.device("cpu")


class _TrainingStep(torch.nn.Module):
    """What DDP wraps: its forward is the LightningModule's ``training_step``."""

    def __init__(self, module: torch.nn.Module, with_idx: bool = True) -> None:
        super().__init__()
        self.module = module
        self.with_idx = with_idx  # False: ``training_step(self, batch)``

    def forward(self, batch: Any, batch_idx: int) -> Any:
        step: Any = self.module.training_step
        return step(batch, batch_idx) if self.with_idx else step(batch)


def resolve_strategy(  # noqa: PLR0912
    strategy: Any,
    accelerator: str | torch.device = "auto",
    devices: Any = "auto",
    num_nodes: int = 1,
    use_distributed_sampler: bool = True,
) -> Strategy:
    """``strategy="auto"`` / ``"single_device"`` / ``"ddp"`` / ``"ddp_spawn"`` / a Strategy object,
    for ``accelerator``/``devices``/``num_nodes`` -> the strategy to use (configured)."""
    if isinstance(accelerator, torch.device):  # one known device
        device = accelerator
        accelerator, devices = device.type, [0 if device.index is None else device.index]
    if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
        raise ValueError(f"Trainer(num_nodes={num_nodes!r}) must be an int >= 1")
    kind, indexes = parse_devices(accelerator, devices)
    if devices == "auto" and kind == "cpu":  # under torchrun/srun, 'auto' = what was launched
        launched = _launch.detect_environment(1)
        if launched.creates_processes_externally and launched.world_size > num_nodes:
            indexes = list(range(launched.world_size // num_nodes))
    parallel = len(indexes) * num_nodes > 1
    if isinstance(strategy, str):
        name = strategy.lower()
        if name == "auto":
            name = "ddp" if parallel else "single_device"
        if name == "single_device":
            if parallel:
                raise ValueError(
                    f"Trainer(strategy={strategy!r}) runs one process, but devices={devices!r}, "
                    f"num_nodes={num_nodes} ask for {len(indexes) * num_nodes}; use 'ddp'"
                )
            return SingleDeviceStrategy(_device(kind, indexes[0]))
        if name in ("ddp", "ddp_spawn"):
            strategy = DDPStrategy(start_method="popen" if name == "ddp" else "spawn")
        elif name.startswith(("ddp", "fsdp", "deepspeed")):
            raise ValueError(
                f"Trainer(strategy={strategy!r}) is not available in this version of fulmen; "
                "choose 'auto', 'ddp', 'ddp_spawn' or 'single_device'"
            )
        else:
            raise ValueError(
                f"Trainer(strategy={strategy!r}) is unknown; choose 'auto', 'ddp', 'ddp_spawn' "
                "or 'single_device', or pass a Strategy object"
            )
    if isinstance(strategy, DDPStrategy):
        strategy.configure(kind, indexes, num_nodes, use_distributed_sampler)
        return strategy
    if isinstance(strategy, Strategy):
        return strategy
    raise TypeError(
        f"Trainer(strategy=...) got {type(strategy).__name__}; expected a str or Strategy"
    )


_EXIT = {"clean": True}  # False once a Trainer run in this process raised


def _end_process_group() -> None:
    """At exit, every rank waits for the others, then the group is destroyed in order.

    Without this, the rank hosting the store could leave while another still tears its group
    down, and that rank aborts in C++ ("terminate called without an active exception").
    """
    if not dist.is_initialized() or not _EXIT["clean"]:
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=30))
        else:
            dist.barrier()
        dist.destroy_process_group()
    except Exception:  # a rank is gone already: the launcher ends the job with its code
        return
