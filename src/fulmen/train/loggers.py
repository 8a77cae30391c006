"""The Logger protocol the Trainer talks to, and ``CSVLogger``, the default logger.

Protocol (Lightning's names): a logger has the properties ``name``, ``version``, ``save_dir``,
``root_dir``, ``log_dir`` and ``experiment`` (the object it writes with, created lazily; on ranks
other than zero a do-nothing ``DummyExperiment``), and the methods

- ``log_hyperparams(params)``: once at fit start, with the module's (and datamodule's) saved
  hyperparameters, unless ``save_hyperparameters(logger=False)``;
- ``log_metrics(metrics, step=None)``: every ``log_every_n_steps`` training steps and at epoch ends,
  ``metrics`` is a dict of floats that always includes ``"epoch"``, ``step`` the global step;
- ``log_graph(model, input_array=None)``: optional, never called by the Trainer itself;
- ``after_save_checkpoint(checkpoint_callback)``: after every checkpoint ModelCheckpoint writes;
- ``save()``: flush (at epoch ends and at the end);
- ``finalize(status)``: once at the end, ``status`` is ``"success"``, ``"failed"`` or
  ``"interrupted"`` (Ctrl-C).

Checkpoint state. A logger may also have ``state_dict() -> dict`` and ``load_state_dict(state)``.
Every checkpoint gets a ``"loggers"`` entry: ``{key: logger.state_dict()}`` for each logger that has
``state_dict``, where ``key`` is the logger's class name (``"WandbLogger"``; a second logger of the
same class gets ``"WandbLogger#1"``). When ``fit(ckpt_path=...)`` restores a checkpoint, each logger
with ``load_state_dict`` receives its entry BEFORE anything else touches the logger (before
``log_hyperparams``), so a tracker logger can resume the same run (the run id is its state).

Side effects happen on global rank zero only: the methods of ``CSVLogger`` are wrapped in
``rank_zero_only``, and its ``experiment`` is a ``DummyExperiment`` elsewhere.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import operator
import os
import re
import warnings
from argparse import Namespace
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from fulmen.train import _paths
from fulmen.train.utilities import rank_zero_only

__all__ = [
    "CSVLogger",
    "DummyExperiment",
    "Logger",
    "TensorBoardLogger",
    "rank_zero_experiment",
    "resolve_loggers",
    "save_hparams_to_yaml",
]

_F = TypeVar("_F", bound=Callable[..., Any])
_PLAIN = (int, float, str)


@runtime_checkable
class Logger(Protocol):
    """What the Trainer needs from a logger; see the module docstring for when each is called."""

    @property
    def name(self) -> str | None: ...

    @property
    def version(self) -> int | str | None: ...

    @property
    def save_dir(self) -> str | None: ...

    @property
    def root_dir(self) -> str | None: ...

    @property
    def log_dir(self) -> str | None: ...

    @property
    def experiment(self) -> Any: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_hyperparams(self, params: Any) -> None: ...

    def log_graph(self, model: Any, input_array: Any = None) -> None: ...

    def save(self) -> None: ...

    def finalize(self, status: str) -> None: ...

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None: ...


class DummyExperiment:
    """Stand-in experiment on ranks other than zero: every attribute is a do-nothing callable."""

    def nop(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, _: str) -> Callable[..., None]:
        return self.nop

    def __getitem__(self, _: Any) -> DummyExperiment:
        return self

    def __setitem__(self, *args: Any) -> None:
        return None


def rank_zero_experiment(fn: _F) -> _F:
    """Decorate a logger's ``experiment`` property getter: a DummyExperiment off rank zero."""

    def experiment(self: Any) -> Any:
        if rank_zero_only.rank > 0:
            return DummyExperiment()
        return fn(self)

    experiment.__doc__ = fn.__doc__
    return experiment  # type: ignore[return-value]


def _to_plain(value: Any) -> Any:
    if isinstance(value, Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "numel", lambda: 2)() == 1:
        return item()
    return str(value)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _key(key: str) -> str:
    reserved = key.lower() in ("true", "false", "null", "yes", "no", "on", "off", "y", "n", "~")
    return key if _PLAIN_KEY.fullmatch(key) and not reserved else json.dumps(key)


def _yaml(value: Any, indent: int = 0) -> list[str]:  # noqa: PLR0911, PLR0912
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        lines: list[str] = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_key(key)}:")
                lines += _yaml(item, indent + 1)
            else:
                lines.append(f"{pad}{_key(key)}: {_yaml(item)[0].strip()}")
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}-")
                lines += _yaml(item, indent + 1)
            else:
                lines.append(f"{pad}- {_yaml(item)[0].strip()}")
        return lines
    if value is None:
        return [pad + "null"]
    if isinstance(value, bool):
        return [pad + ("true" if value else "false")]
    if isinstance(value, float) and math.isnan(value):
        return [pad + ".nan"]
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return [pad + (".inf" if value > 0 else "-.inf")]
    return [pad + json.dumps(value)]  # JSON strings and numbers are valid YAML scalars


def save_hparams_to_yaml(path: str | os.PathLike[str], hparams: Any) -> None:
    """Write ``hparams`` (dict or Namespace) as YAML; values that are not plain become strings."""
    plain = _to_plain(hparams)
    with _paths.open_text(os.fspath(path), "w") as f:  # a local path or a URL (fsspec)
        f.write("\n".join(_yaml(plain)) + "\n")


class _ExperimentWriter:
    """The CSVLogger's experiment: buffers rows, writes ``metrics.csv`` and ``hparams.yaml``."""

    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.hparams: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self._known_keys: set[str] = set()  # metrics_keys, for fast membership tests
        # LightningCLI's SaveConfigCallback writes config.yaml there first: that is not a reuse
        if _paths.isdir(log_dir) and set(_paths.listdir(log_dir)) - {"config.yaml"}:
            warnings.warn(
                f"Experiment logs directory {log_dir} exists and is not empty. Previous log files "
                "in this directory will be deleted when the new ones are saved!",
                UserWarning,
                stacklevel=4,
            )
        _paths.makedirs(log_dir)
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        if _paths.isfile(self.metrics_file_path):  # a reused version starts a fresh file
            _paths.remove(self.metrics_file_path)

    def log_hparams(self, params: Mapping[str, Any]) -> None:
        self.hparams.update(params)
        save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        row = dict(metrics)  # a copy: the Trainer hands the same dict to every logger
        for key, value in row.items():
            if (
                type(value) is not float
                and not isinstance(value, _PLAIN)
                and hasattr(value, "item")
            ):
                row[key] = value.item()  # tensors
        row["step"] = len(self.metrics) if step is None else step
        self.metrics.append(row)

    def save(self) -> None:
        if not self.metrics:
            return
        known = self._known_keys
        new_keys: list[str] = []
        if not known.issuperset(set().union(*self.metrics)):  # (usually no new column)
            new_keys = list(dict.fromkeys(k for row in self.metrics for k in row if k not in known))
        exists = _paths.isfile(self.metrics_file_path)
        if new_keys:
            self.metrics_keys += new_keys
            known.update(new_keys)
            if exists:  # a new column: rewrite the file under the wider header
                with _paths.open_text(self.metrics_file_path, "r") as f:
                    old = list(csv.DictReader(f))
                self._write(old, mode="w")
                exists = True
        self._write(self.metrics, mode="a" if exists else "w")
        self.metrics = []

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        keys = self.metrics_keys
        with _paths.open_text(self.metrics_file_path, mode) as f:
            writer = csv.writer(f)
            if mode == "w":
                writer.writerow(keys)
            if len(keys) > 1 and min(map(len, rows)) == len(keys):  # every row has every key
                writer.writerows(map(operator.itemgetter(*keys), rows))
            else:
                writer.writerows([row.get(k, "") for k in keys] for row in rows)


class CSVLogger:
    """Log to ``save_dir/name/version_N/metrics.csv`` (a ``step`` column) and ``hparams.yaml``.

    ``version=None`` takes the next free ``version_N`` under ``save_dir/name``; a string is used as
    the folder name. Metric keys get ``prefix + "-"`` in front when ``prefix`` is given. Rows are
    buffered and written every ``flush_logs_every_n_steps`` steps and by ``save()``; a new column
    rewrites the file under the wider header.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        self._save_dir = _paths.expand(save_dir)  # ``~`` expanded; a URL goes through fsspec
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_every = flush_logs_every_n_steps
        self._experiment: _ExperimentWriter | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        if self._version is None:
            self._version = self._next_version()
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return os.path.join(self._save_dir, self._name) if self._name else self._save_dir

    @property
    def log_dir(self) -> str:
        version = self.version
        folder = version if isinstance(version, str) else f"version_{version}"
        return os.path.join(self.root_dir, folder)

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        """The writer (created on first use, on rank zero only)."""
        if self._experiment is None:
            self._experiment = _ExperimentWriter(self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Any = None) -> None:
        """Merge ``params`` (a dict, Namespace...; None: nothing new) into ``hparams.yaml``."""
        self.experiment.log_hparams(_to_plain(params) if params is not None else {})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Buffer a row (``step=None``: the row's index); written by ``save()``."""
        if rank_zero_only.rank != 0:  # what @rank_zero_only does, without its call every step
            return
        if self._prefix:
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in metrics.items()}
        # the writer exists after the first call: skip the experiment property's layers
        (self._experiment or self.experiment).log_metrics(metrics, step)
        if step is not None and (step + 1) % self._flush_every == 0:
            self.save()

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """CSV has no graph: does nothing."""

    @rank_zero_only
    def save(self) -> None:
        if self._experiment is not None:
            self._experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:  # nothing was logged: create no folder
            self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """CSVLogger keeps no checkpoints: does nothing."""

    def _next_version(self) -> int:
        root = self.root_dir
        if not _paths.isdir(root):
            return 0
        found = []
        for entry in _paths.listdir(root):
            if entry.startswith("version_") and _paths.isdir(os.path.join(root, entry)):
                suffix = entry[len("version_") :]
                if suffix.isdigit():
                    found.append(int(suffix))
        return max(found) + 1 if found else 0


_LOGGER_MEMBERS = (
    "name",
    "version",
    "save_dir",
    "root_dir",
    "log_dir",
    "experiment",
    "log_metrics",
    "log_hyperparams",
    "log_graph",
    "save",
    "finalize",
    "after_save_checkpoint",
)


def is_logger(obj: Any) -> bool:
    """``isinstance(obj, Logger)`` without reading the properties: on Python < 3.12 the protocol
    check calls ``hasattr``, which would evaluate ``experiment`` (creating a run, a folder) and
    ``version`` before a checkpoint's logger state can be restored."""
    return all(
        inspect.getattr_static(obj, member, _MISSING) is not _MISSING for member in _LOGGER_MEMBERS
    )


_MISSING = object()


def resolve_loggers(logger: Any, default_root_dir: str, fast_dev_run: int = 0) -> list[Logger]:
    """``Trainer(logger=...)``: True/None (a CSVLogger), False, a logger or a list of them."""
    if fast_dev_run or logger is False:
        return []
    if logger is None or logger is True:
        return [CSVLogger(default_root_dir)]
    loggers = list(logger) if isinstance(logger, list | tuple) else [logger]
    for item in loggers:
        if not is_logger(item):
            raise TypeError(
                f"Trainer(logger=...): {type(item).__name__} is not a logger (it lacks part "
                "of the Logger protocol: name, version, save_dir, log_dir, log_metrics, "
                "log_hyperparams, save, finalize, ...)"
            )
    return loggers


def _tensorboard_missing() -> bool:
    import importlib

    try:
        importlib.import_module("tensorboard")  # only asked whether it is there
    except ImportError:
        return True
    return False


class TensorBoardLogger:
    """Log to TensorBoard event files in ``save_dir/name/version_N[/sub_dir]`` (Lightning's
    arguments), through ``torch.utils.tensorboard.SummaryWriter``; ``hparams.yaml`` beside them.

    Needs the ``tensorboard`` package (``pip install tensorboard``): it is imported when the
    logger is created, not when fulmen is. fulmen's default logger stays CSVLogger; pass
    ``Trainer(logger=TensorBoardLogger(...))`` to get event files. ``log_hyperparams`` also writes
    the ``hp_metric`` placeholder (-1) when ``default_hp_metric=True``, as Lightning does, so that
    TensorBoard's HPARAMS tab shows the run; extra ``**kwargs`` go to SummaryWriter.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if _tensorboard_missing():
            raise ModuleNotFoundError(
                "TensorBoardLogger needs the `tensorboard` package, which is not installed: "
                "`pip install tensorboard`"
            )
        self._save_dir = os.path.expanduser(os.fspath(save_dir))
        self._name = name or ""
        self._version = version
        self._log_graph = log_graph
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._sub_dir = None if sub_dir is None else os.path.expanduser(os.fspath(sub_dir))
        self._kwargs = kwargs
        self._experiment: Any = None
        self.hparams: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        if self._version is None:
            self._version = CSVLogger._next_version(self)  # type: ignore[arg-type]
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return os.path.join(self._save_dir, self._name) if self._name else self._save_dir

    @property
    def log_dir(self) -> str:
        version = self.version
        folder = version if isinstance(version, str) else f"version_{version}"
        path = os.path.join(self.root_dir, folder)
        return os.path.join(path, self._sub_dir) if self._sub_dir else path

    @property
    def sub_dir(self) -> str | None:
        return self._sub_dir

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``SummaryWriter`` (created on first use, on rank zero only)."""
        if self._experiment is None:
            from torch.utils.tensorboard import SummaryWriter

            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(
        self, params: Any = None, metrics: Mapping[str, float] | None = None
    ) -> None:
        plain = _to_plain(params) if params is not None else {}
        self.hparams.update(plain)
        if metrics is None and self._default_hp_metric:
            metrics = {"hp_metric": -1}
        if not plain and metrics is None:
            return
        from torch.utils.tensorboard.summary import hparams

        flat = {
            k: v if isinstance(v, bool | int | float | str) else str(v)
            for k, v in _flatten(plain).items()
        }
        experiment = self.experiment
        if metrics:
            self.log_metrics(metrics, 0)
        exp, ssi, sei = hparams(flat, dict(metrics or {}))  # type: ignore[no-untyped-call]
        writer = experiment._get_file_writer()  # the three hparams summaries, as Lightning
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if rank_zero_only.rank != 0:
            return
        experiment = self.experiment
        for key, value in metrics.items():
            name = f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}" if self._prefix else key
            if isinstance(value, Mapping):
                experiment.add_scalars(name, dict(value), step)
                continue
            item = getattr(value, "item", None)
            experiment.add_scalar(name, float(item() if callable(item) else value), step)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """The module's graph (``log_graph=True``), traced on ``input_array`` or the module's
        ``example_input_array``."""
        if not self._log_graph:
            return
        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:
            warnings.warn(
                "Could not log computational graph to TensorBoard: The "
                "`model.example_input_array` attribute is not set or `input_array` was not "
                "given.",
                UserWarning,
                stacklevel=2,
            )
            return
        self.experiment.add_graph(model, input_array)

    @rank_zero_only
    def save(self) -> None:
        if self._experiment is None:
            return
        self._experiment.flush()
        hparams_file = os.path.join(self.log_dir, "hparams.yaml")
        if os.path.isdir(self.log_dir) and not os.path.isfile(hparams_file):
            save_hparams_to_yaml(hparams_file, self.hparams)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.save()
            self._experiment.close()
            self._experiment = None

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """TensorBoard keeps no checkpoints: does nothing."""

    def __getstate__(self) -> dict[str, Any]:  # the writer holds a thread; it is made anew
        state = self.__dict__.copy()
        state["_experiment"] = None
        return state


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat
