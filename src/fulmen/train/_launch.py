"""Who started this process, and starting the others: the launchers DDP runs under.

``detect_environment`` reads the environment variables a launcher sets and returns where this
process stands (``Cluster``). In order of precedence:

- torchrun (TorchElastic): ``RANK``, ``GROUP_RANK``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` all
  set. Rank ``RANK``, local rank ``LOCAL_RANK``, node ``GROUP_RANK``, world ``WORLD_SIZE``.
- SLURM (srun): ``SLURM_NTASKS`` > 1 and ``SLURM_PROCID`` set. Rank ``SLURM_PROCID``, local rank
  ``SLURM_LOCALID``, node ``SLURM_NODEID``, world ``SLURM_NTASKS``.
- Open MPI: ``OMPI_COMM_WORLD_SIZE`` > 1. Rank ``OMPI_COMM_WORLD_RANK``, local rank
  ``OMPI_COMM_WORLD_LOCAL_RANK``, node rank // ``OMPI_COMM_WORLD_LOCAL_SIZE``, world
  ``OMPI_COMM_WORLD_SIZE``.
- MPICH / Intel MPI (PMI): ``PMI_SIZE`` > 1 and ``PMI_RANK`` set. Rank ``PMI_RANK``, local rank
  ``MPI_LOCALRANKID`` (else rank % devices), node rank // devices, world ``PMI_SIZE``.
- fulmen itself: ``LOCAL_RANK`` set (a process fulmen started, or one started by hand the same
  way). Rank ``RANK``, local rank ``LOCAL_RANK``, node ``NODE_RANK``, world ``WORLD_SIZE``.
- none of these: this process is local rank zero and starts the others (``LocalLauncher``).

The rendezvous address is ``MASTER_ADDR``/``MASTER_PORT`` when set. Otherwise: torchrun always sets
them; under SLURM the address is the first host of ``SLURM_NODELIST`` and the port
10000 + the last four digits of ``SLURM_JOB_ID``; under MPI 127.0.0.1 and port 29500 (set both for
several nodes); started directly, 127.0.0.1 and a port the OS picks for the rendezvous server of
local rank zero (already listening before the others start). Several nodes started by hand need
``MASTER_ADDR``, ``MASTER_PORT`` and ``NODE_RANK`` on each.

Started directly (``python train.py``), the first process re-runs the same command line
(``sys.argv``, or ``python -m package`` when run with ``-m``) once per other local device, with
``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``NODE_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` set, and watches them: when one exits with an error, the others are killed and the
first process stops too, with that exit code. The children watch their parent in turn and exit when
it is gone, so no process is left behind.

The launcher's decisions (which launcher started this process, the rendezvous, the processes it
starts, how the children ended) go to the ``fulmen.train`` logger: quiet by default, shown with
``FULMEN_LOG_LEVEL=info`` (``debug`` adds where each process stands). A child that failed, the
reason the whole job stops, is written to stderr whatever the level.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

_log = logging.getLogger("fulmen.train")

# How long the first process waits, after a child failed, for its own main thread to stop on the
# collective error before it exits hard (the failing child's traceback is already on stderr).
# Interrupting the main thread instead would not help: a thread blocked in a C++ collective only
# sees a KeyboardInterrupt when the collective returns.
_GRACE_S = 3.0
_POLL_S = 0.2


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where this process stands: its ranks, the world, the rendezvous, and who launched it."""

    launcher: str  # "torchelastic", "slurm", "mpi", "subprocess" (a child) or "none"
    global_rank: int
    local_rank: int
    node_rank: int
    world_size: int
    main_address: str
    main_port: int  # 0: not chosen yet (fulmen picks a free one when it launches)

    @property
    def creates_processes_externally(self) -> bool:
        return self.launcher != "none"


def _int(env: dict[str, str], key: str, default: int | None = None) -> int:
    value = env.get(key)
    if value is None or not value.strip().lstrip("-").isdigit():
        if default is None:
            raise ValueError(f"environment variable {key}={value!r}: expected an integer")
        return default
    return int(value)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``"node[03-05,7],gpu1"`` -> ``"node03"``."""
    nodelist = nodelist.strip()
    match = re.match(r"([^,\[]+)(\[([^\]]*)\])?", nodelist)
    if not match:
        return "127.0.0.1"
    prefix, ranges = match.group(1), match.group(3)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def detect_environment(devices: int, env: dict[str, str] | None = None) -> Cluster:
    """This process's place in the job (see the module docstring), for ``devices`` per node."""
    cluster = _detect(devices, dict(os.environ) if env is None else env)
    _log.debug(
        "DDP environment: launcher %s, rank %d (local %d, node %d), world %d, rendezvous %s:%d",
        cluster.launcher,
        cluster.global_rank,
        cluster.local_rank,
        cluster.node_rank,
        cluster.world_size,
        cluster.main_address,
        cluster.main_port,
    )
    return cluster


def _detect(devices: int, env: dict[str, str]) -> Cluster:
    address = env.get("MASTER_ADDR", "127.0.0.1")
    port = _int(env, "MASTER_PORT", 0)
    if all(k in env for k in ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")):
        return Cluster(
            "torchelastic",
            _int(env, "RANK"),
            _int(env, "LOCAL_RANK"),
            _int(env, "GROUP_RANK"),
            _int(env, "WORLD_SIZE"),
            address,
            port,
        )
    if _int(env, "SLURM_NTASKS", 1) > 1 and "SLURM_PROCID" in env:
        job = re.sub(r"\D", "", env.get("SLURM_JOB_ID", "")) or "0"
        return Cluster(
            "slurm",
            _int(env, "SLURM_PROCID"),
            _int(env, "SLURM_LOCALID", 0),
            _int(env, "SLURM_NODEID", 0),
            _int(env, "SLURM_NTASKS"),
            env.get("MASTER_ADDR") or first_host(env.get("SLURM_NODELIST", "127.0.0.1")),
            port or 10000 + int(job[-4:]),
        )
    if _int(env, "OMPI_COMM_WORLD_SIZE", 1) > 1:
        rank = _int(env, "OMPI_COMM_WORLD_RANK")
        local_size = _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", devices)
        return Cluster(
            "mpi",
            rank,
            _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", rank % max(local_size, 1)),
            rank // max(local_size, 1),
            _int(env, "OMPI_COMM_WORLD_SIZE"),
            address,
            port or 29500,
        )
    if _int(env, "PMI_SIZE", 1) > 1 and "PMI_RANK" in env:
        rank = _int(env, "PMI_RANK")
        return Cluster(
            "mpi",
            rank,
            _int(env, "MPI_LOCALRANKID", rank % max(devices, 1)),
            rank // max(devices, 1),
            _int(env, "PMI_SIZE"),
            address,
            port or 29500,
        )
    if "LOCAL_RANK" in env:  # started by fulmen's own launcher (or by hand, the same way)
        local_rank = _int(env, "LOCAL_RANK")
        node_rank = _int(env, "NODE_RANK", 0)
        return Cluster(
            "subprocess",
            _int(env, "RANK", node_rank * devices + local_rank),
            local_rank,
            node_rank,
            _int(env, "WORLD_SIZE", devices),
            address,
            port,
        )
    node_rank = _int(env, "NODE_RANK", 0)
    return Cluster("none", node_rank * devices, 0, node_rank, 0, address, port)


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command() -> list[str]:
    """The command line that started this process, to run it again."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    script = sys.argv[0] if sys.argv else ""
    name = spec.name.removesuffix(".__main__") if spec is not None and spec.name else ""
    if name in ("pytest", "ipykernel_launcher") or os.path.basename(script) == "pytest":
        script = ""  # re-running a test session or a notebook kernel would not do what is meant
    elif name:  # python -m package(.module)
        return [sys.executable, "-m", name, *sys.argv[1:]]
    if not script or script == "-c" or not os.path.exists(script):
        raise RuntimeError(
            "Trainer(strategy='ddp') starts the other processes by running this script again, "
            f"but this process was not started from a script file (sys.argv[0]={script!r}). "
            "Run a script (python train.py), launch with torchrun, or use strategy='ddp_spawn'."
        )
    return [sys.executable, *sys.argv]


class LocalLauncher:
    """Runs this script again for local ranks 1..n-1 and watches them (see the module docstring)."""

    def __init__(self, cluster: Cluster, devices: int, num_nodes: int) -> None:
        self.cluster = cluster
        self.devices = devices
        self.num_nodes = num_nodes
        self.children: list[subprocess.Popen[bytes]] = []
        self._failed_main = False
        self._stopping = False

    def launch(self, address: str, port: int) -> None:
        """Start the children, telling them the rendezvous ``address:port``."""
        command = _command()
        world = self.devices * self.num_nodes
        for local_rank in range(1, self.devices):
            env = {
                **os.environ,
                "MASTER_ADDR": address,
                "MASTER_PORT": str(port),
                "NODE_RANK": str(self.cluster.node_rank),
                "LOCAL_RANK": str(local_rank),
                "LOCAL_WORLD_SIZE": str(self.devices),
                "RANK": str(self.cluster.node_rank * self.devices + local_rank),
                "WORLD_SIZE": str(world),
                "FULMEN_PARENT_PID": str(os.getpid()),
            }
            # its own process group, so that stopping it stops whatever it started too
            child = subprocess.Popen(command, env=env, start_new_session=True)
            self.children.append(child)
            _log.info(
                "DDP: started local rank %d of %d (rank %s, pid %d), rendezvous %s:%d: %s",
                local_rank,
                self.devices,
                env["RANK"],
                child.pid,
                address,
                port,
                " ".join(command),
            )
        threading.Thread(target=self._watch, name="fulmen-ddp-watch", daemon=True).start()
        atexit.register(self._at_exit)
        previous = sys.excepthook

        def excepthook(*args: Any) -> None:
            self._failed_main = True
            previous(*args)

        sys.excepthook = excepthook

    def kill_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    child.kill()
        for child in self.children:
            child.wait()

    def _watch(self) -> None:
        while not self._stopping:
            for rank, child in enumerate(self.children, start=1):
                code = child.poll()
                if code is not None and code != 0:
                    # The reason the job stops: on stderr whatever the log level (as a traceback
                    # would be), not a diagnostic.
                    print(
                        f"fulmen: local rank {rank} (pid {child.pid}) exited with code {code}; "
                        "stopping every process of this job",
                        file=sys.stderr,
                        flush=True,
                    )
                    self._stopping = True
                    # A collective in progress here now fails (its peers are gone), so the loop
                    # ends through its usual failure path; the grace period bounds the wait.
                    self.kill_children()
                    time.sleep(_GRACE_S)
                    os._exit(code if 0 < code < 256 else 1)
            time.sleep(_POLL_S)

    def _at_exit(self) -> None:
        """This process ends: the children end with it (at once when it failed)."""
        if self._stopping:
            return
        self._stopping = True
        if self._failed_main:
            self.kill_children()
            return
        deadline = time.monotonic() + 60.0  # a healthy child ends when its script does
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(max(deadline - time.monotonic(), 0.1))
        codes = [child.poll() for child in self.children]
        self.kill_children()
        bad = [c for c in codes if c not in (0, None)] or [1 for c in codes if c is None]
        if bad:
            _log.warning(
                "DDP: at exit the other local ranks ended with %s (None: still running after "
                "60 s, killed); exiting with code %d",
                codes,
                bad[0] if 0 < bad[0] < 256 else 1,
            )
            sys.stderr.flush()
            os._exit(bad[0] if 0 < bad[0] < 256 else 1)


def watch_parent() -> None:
    """In a process started by ``LocalLauncher``: exit when the first process is gone."""
    parent = os.environ.get("FULMEN_PARENT_PID")
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(_POLL_S * 5)
        _log.warning("DDP: the first process (pid %s) is gone; this process exits", parent)
        os._exit(1)

    threading.Thread(target=watch, name="fulmen-ddp-parent", daemon=True).start()
