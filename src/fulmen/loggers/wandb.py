"""``WandbLogger``: the Trainer's metrics, hyperparameters, gradients and checkpoints, recorded by
``fulmen.track`` (Lightning's ``WandbLogger`` API; docs/loggers.md).

The run's life:

- created lazily, on global rank zero only, the first time ``experiment`` is read (``log_metrics``,
  ``log_hyperparams``, ``watch``, ...); other ranks get a ``DummyExperiment``;
- ``finalize("success")`` uploads pending checkpoints but leaves the run open, so ``trainer.test``
  after ``trainer.fit`` logs into the same run; the tracker's ``atexit`` hook finishes it when the
  program ends (or the user calls ``finish()``); ``finalize("failed")`` finishes it as failed and
  ``finalize("interrupted")`` as killed;
- ``state_dict()`` puts the run id and the tracker's step into every checkpoint; a fresh
  ``WandbLogger()`` given that state by ``fit(ckpt_path=...)`` resumes the same run, and its first
  row rewinds the run to that step so the rows the crashed attempt logged after the checkpoint
  are superseded.

Hot path: ``log_metrics`` builds one plain dict of the same keys and types every step, so the
tracker's ``log()`` takes its precompiled fast path.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from fulmen import track
from fulmen.track._settings import SETTINGS, settings_file
from fulmen.train.loggers import DummyExperiment
from fulmen.train.utilities import rank_zero_only

__all__ = ["WandbLogger"]

LOG_MODEL_CHOICES = (False, True, "all", "best_and_last")
_RANK_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "SLURM_PROCID",
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "JSM_NAMESPACE_RANK",
    "MV2_COMM_WORLD_RANK",
)
_ENDED = frozenset(("finished", "failed", "killed"))
_CHECKPOINT_SETTINGS = (
    "monitor",
    "mode",
    "save_last",
    "save_top_k",
    "save_weights_only",
    "_every_n_train_steps",
)


def global_rank() -> int:
    """This process's global rank: the strategy's, else the first launcher variable that is set.

    Read on every call (not once at import) so that a launcher's variables set late still count;
    LOCAL_RANK is included because some launchers set nothing else on single-node jobs.
    """
    if rank_zero_only.rank:
        return rank_zero_only.rank
    for key in _RANK_VARIABLES:
        value = os.environ.get(key, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def _setting(name: str) -> str | None:
    """A tracker setting from the environment or the settings file (None when unset)."""
    fulmen_var, wandb_var, _ = SETTINGS[name]
    value = os.environ.get(fulmen_var) or (os.environ.get(wandb_var) if wandb_var else None)
    return value or settings_file().get(name) or None


def _plain(value: Any) -> Any:
    """Hyperparameters as JSON values: nesting kept, anything else a string."""
    if isinstance(value, Namespace):
        value = vars(value)
    elif is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)
    numel = getattr(value, "numel", None)
    if callable(item) and callable(numel) and numel() == 1:
        return item()
    return str(value)


class WandbLogger:
    """Log to a ``fulmen.track`` run: ``Trainer(logger=WandbLogger())``. See docs/loggers.md."""

    LOGGER_JOIN_CHAR = "-"
    STEP_METRIC = "trainer/global_step"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike[str] = ".",
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike[str] | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str | None = None,
        log_model: bool | str = False,
        experiment: Any = None,
        prefix: str = "",
        sync_step: bool = True,
        checkpoint_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if log_model is not True and log_model is not False and log_model not in LOG_MODEL_CHOICES:
            raise ValueError(
                f"WandbLogger(log_model=...) must be one of {LOG_MODEL_CHOICES}, got {log_model!r}"
            )
        if id is not None and version is not None and id != version:
            raise ValueError(
                f"WandbLogger: id={id!r} and version={version!r} are the same setting; give one"
            )
        unknown = set(kwargs) - {*SETTINGS, "config", "reinit", "settings"}
        if unknown:
            raise TypeError(f"WandbLogger got unknown arguments: {', '.join(sorted(unknown))}")
        self._project = project or _setting("project") or "lightning_logs"
        self._id: str | None = version or id
        # dir wins whenever given (Lightning ignores it unless save_dir is None); the default
        # save_dir "." defers to the tracker's own directory (FULMEN_DIR, WANDB_DIR, settings).
        if dir is not None:
            self._save_dir = os.fspath(dir)
        elif save_dir is not None and os.fspath(save_dir) != ".":
            self._save_dir = os.fspath(save_dir)
        else:
            self._save_dir = _setting("dir") or "."
        self._init_kwargs: dict[str, Any] = {
            "name": name,
            "project": self._project,
            "dir": self._save_dir,
            "resume": "allow",
            "anonymous": anonymous,
            "mode": "offline" if offline else None,
        }
        self._init_kwargs.update(kwargs)
        self._offline = offline
        self._log_model = log_model
        self._prefix = prefix
        self._sync_step = sync_step
        self._checkpoint_name = checkpoint_name
        self._experiment: Any = experiment
        if experiment is not None:
            self._id = experiment.id
            self._declare_step_metric(experiment)
        self._rewind_to: int | None = None  # set by load_state_dict: the checkpoint's step
        self._last_step: int | None = None  # the last step log_metrics got (media default)
        self._checkpoint_callback: Any = None
        self._logged_checkpoints: dict[str, tuple[float, str]] = {}  # path -> (mtime, version)

    # --- the Logger protocol's properties ---------------------------------------------------------

    @property
    def name(self) -> str:
        """The project (Lightning's meaning: the folder checkpoints go under)."""
        return self._project

    @property
    def version(self) -> str | None:
        """The run id (known once the run exists, or given as ``id``/``version``)."""
        if self._id is None and self._experiment is not None:
            self._id = self._experiment.id
        if self._id is None and global_rank() == 0:
            self._id = self.experiment.id
        return self._id

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return os.path.join(self._save_dir, self._project)

    @property
    def log_dir(self) -> str:
        return os.path.join(self.root_dir, str(self.version))

    @property
    def experiment(self) -> Any:
        """The ``fulmen.track`` run, created on first use (a DummyExperiment off rank zero)."""
        run = self._experiment
        if run is not None and run.state not in _ENDED:
            return run
        if global_rank() > 0:
            return DummyExperiment()
        if run is not None:  # finished by a failed fit: continue the same run (test after fit)
            kwargs = {**self._init_kwargs, "id": run.id, "resume": "allow"}
            run = track.init(**kwargs)
        elif track.run is not None:
            run = track.run
            warnings.warn(
                f"WandbLogger: a fulmen.track run is already active ({run.id}); logging into it. "
                "Call fulmen.track.finish() first to start a new run.",
                UserWarning,
                stacklevel=2,
            )
        else:
            run = track.init(id=self._id, **self._init_kwargs)
        self._experiment = run
        self._id = run.id
        self._declare_step_metric(run)
        return run

    def _declare_step_metric(self, run: Any) -> None:
        if self._sync_step and hasattr(run, "define_metric"):
            run.define_metric(self.STEP_METRIC)
            run.define_metric("*", step_metric=self.STEP_METRIC, step_sync=True)

    # --- logging ----------------------------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One history row: the metrics (prefixed) plus ``trainer/global_step`` when ``step``."""
        run = self._experiment
        if run is None or run._state in _ENDED:  # (the attribute: this runs every step)
            run = self.experiment
        prefix = self._prefix
        if prefix:
            row = {f"{prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in metrics.items()}
        else:
            row = dict(metrics)  # the Trainer hands the same dict to every logger
        if step is not None:
            row[self.STEP_METRIC] = step
            self._last_step = step
        if self._rewind_to is None:
            run.log(row)  # same keys and types each step: the tracker's fast path
        else:
            at = self._resume_point(run, row)
            if at is None:
                run.log(row)
            else:  # supersede what the crashed attempt logged from there on (a REWIND)
                run.log(row, step=at, commit=True)

    def _resume_point(self, run: Any, row: dict[str, Any]) -> int | None:
        """The first row after resuming from a checkpoint: the tracker step it goes back to.

        The crashed attempt may have logged rows after the checkpoint was written that belong
        to work the checkpoint holds (ModelCheckpoint saves before the row of its batch and
        before the epoch-end row). So the run goes back to the first row written after the
        checkpoint that this attempt will log again: a row at this row's trainer step or later
        with some of its metric keys; rows before that one are kept. Read once, at resume.
        """
        mark, self._rewind_to = self._rewind_to, None
        step = row.get(self.STEP_METRIC)
        if mark is None or not isinstance(step, int):
            return mark
        keys = set(row) - {self.STEP_METRIC, "epoch"}
        with contextlib.suppress(ValueError):
            for old in track.Api(dir=str(run.run_dir.parent)).run(run.id).scan_history():
                old_step = old.get(self.STEP_METRIC)
                if old["_step"] < mark or not isinstance(old_step, int):
                    continue
                if old_step > step or (old_step == step and keys & set(old)):
                    return int(old["_step"])
            return None  # nothing logged after the checkpoint needs superseding
        return mark

    def log_hyperparams(self, params: Any) -> None:
        """Merge ``params`` (dict, Namespace or dataclass) into the run's config, not flattened."""
        if params is None or global_rank() > 0:
            return
        plain = _plain(params)
        if not isinstance(plain, dict):
            raise TypeError(
                f"log_hyperparams takes a dict, Namespace or dataclass, got {type(params).__name__}"
            )
        self.experiment.config.update(plain, allow_val_change=True)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Records the model topology (``watch`` with no histograms)."""
        self.experiment.watch(model, log=None, log_graph=True)

    def log_table(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """A ``fulmen.track.Table`` (cells may be images, audio, ...) under ``key``."""
        if global_rank() > 0:
            return
        table = track.Table(columns=columns, data=data, dataframe=dataframe)
        self.log_metrics({key: table}, self._last_step if step is None else step)

    def log_text(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[str]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """``log_table`` for text (Lightning's signature)."""
        self.log_table(key, columns, data, dataframe, step)

    def log_image(
        self, key: str, images: list[Any], step: int | None = None, **kwargs: Any
    ) -> None:
        """Images under one key, one ``track.Image`` each; every keyword argument (``caption``,
        ``masks``, ``boxes``, ...) is a list with one entry per image."""
        self._log_media(key, images, "images", track.Image, step, kwargs)

    def log_audio(
        self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any
    ) -> None:
        """Sounds under one key (``sample_rate``, ``caption``: one per item)."""
        self._log_media(key, audios, "audios", track.Audio, step, kwargs)

    def log_video(
        self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any
    ) -> None:
        """Clips under one key (``fps``, ``format``, ``caption``: one per item)."""
        self._log_media(key, videos, "videos", track.Video, step, kwargs)

    def _log_media(
        self, key: str, items: Any, what: str, kind: Any, step: int | None, kwargs: dict[str, Any]
    ) -> None:
        # Lightning's checks and messages, word for word
        if not isinstance(items, list):
            raise TypeError(f'Expected a list as "{what}", found {type(items)}')
        n = len(items)
        for name, values in kwargs.items():
            if len(values) != n:
                raise ValueError(f"Expected {n} items but only found {len(values)} for {name}")
        if global_rank() > 0:
            return
        per_item = [{name: kwargs[name][i] for name in kwargs} for i in range(n)]
        values = [kind(item, **extra) for item, extra in zip(items, per_item, strict=True)]
        # no step (a callback's on_validation_batch_end): the last trainer/global_step, as
        # W&B's step_sync fills it in, so the media line up with the metrics on that x-axis
        self.log_metrics({key: values}, self._last_step if step is None else step)

    def watch(
        self, model: Any, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True
    ) -> None:
        """Histograms of gradients and/or parameters every ``log_freq`` backward passes."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    def save(self) -> None:
        """Nothing to do: every row is handed to the OS by ``log()`` before it returns."""

    def finalize(self, status: str) -> None:
        """Upload pending checkpoints; end the run when the fit failed or was interrupted."""
        run = self._experiment
        if run is None or global_rank() > 0 or run.state in _ENDED:
            return
        if self._checkpoint_callback is not None and self._log_model:
            self._log_checkpoints(self._checkpoint_callback)
        if status == "failed":
            run.finish(exit_code=1)
        elif status == "interrupted":
            finish = getattr(run, "_finish", None)  # killed, as the tracker's own Ctrl-C hook
            if finish is not None:
                finish(130, "killed")
            else:
                run.finish(exit_code=130)
        # success: the run stays open for trainer.test(); atexit or finish() ends it.

    def finish(self) -> None:
        """End the run now (finished)."""
        if self._experiment is not None:
            self._experiment.finish()

    # --- checkpoints ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The run id and the tracker's next step: what a resumed fit needs to continue the run."""
        run = self._experiment
        return {
            "id": self.version,
            "step": getattr(run, "step", None) if run is not None else None,
            "project": self._project,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the checkpoint's run (unless an id or run was given explicitly)."""
        if self._experiment is None and self._id is None and state.get("id"):
            self._id = str(state["id"])
        if state.get("id") == self._id and state.get("step") is not None:
            self._rewind_to = int(state["step"])

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Upload now ("all", "best_and_last", or True with save_top_k=-1), else at the end."""
        self._checkpoint_callback = checkpoint_callback
        log_model = self._log_model
        if not log_model or global_rank() > 0:
            return
        if log_model in ("all", "best_and_last") or (
            log_model is True and checkpoint_callback.save_top_k == -1
        ):
            self._log_checkpoints(checkpoint_callback)

    def _log_checkpoints(self, callback: Any) -> None:
        run = self.experiment
        best = callback.best_model_path
        found: dict[str, Any] = dict(callback.best_k_models)
        if callback.last_model_path:
            found.setdefault(callback.last_model_path, None)
        if best:
            found.setdefault(best, callback.best_model_score)
        if self._log_model == "best_and_last":
            last = _newest(found)
            found = {p: s for p, s in found.items() if p in (best, last)}
        name = self._checkpoint_name or f"model-{run.id}"
        for path in sorted(found, key=_mtime):  # oldest first: the newest ends up "latest"
            mtime = _mtime(path)
            seen = self._logged_checkpoints.get(path)
            if not os.path.isfile(path) or (seen is not None and seen[0] == mtime):
                continue  # gone, or already logged (a new best is always a new file)
            score = found[path]
            settings = {k: getattr(callback, k, None) for k in _CHECKPOINT_SETTINGS}
            metadata = {
                "score": score.item() if hasattr(score, "item") else score,
                "original_filename": Path(path).name,
                type(callback).__name__: settings,
            }
            artifact = track.Artifact(name, type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt")
            run.log_artifact(artifact, aliases=["latest", "best"] if path == best else ["latest"])
            self._logged_checkpoints[path] = (mtime, str(artifact.version))
        if self._log_model == "best_and_last":
            self._drop_other_versions(run, name)

    def _drop_other_versions(self, run: Any, name: str) -> None:
        """Keep exactly the versions that "best" and "latest" point to."""
        api = track.Api(dir=self._save_dir)
        keep = set()
        for alias in ("best", "latest"):
            with contextlib.suppress(ValueError):  # no best (yet)
                keep.add(api.artifact(f"{name}:{alias}").version)
        for path, (_, version) in list(self._logged_checkpoints.items()):
            if version in keep:
                continue
            with contextlib.suppress(ValueError):  # already gone (two paths, same bytes)
                api.artifact(f"{name}:{version}").delete(delete_aliases=True)
            staged = Path(run.dir) / "artifacts" / f"{name}-{version}.json"
            staged.unlink(missing_ok=True)  # not uploaded at sync either
            del self._logged_checkpoints[path]

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """The artifact ``"name:alias"`` (recorded as used by this run)."""
        return self.experiment.use_artifact(artifact, type=artifact_type)

    @staticmethod
    def download_artifact(
        artifact: str,
        save_dir: str | os.PathLike[str] | None = None,
        artifact_type: str | None = None,
        use_artifact: bool | None = True,
    ) -> str:
        """Download ``"name:alias"`` to ``save_dir`` and return the folder (Lightning's static)."""
        run = track.run
        if use_artifact and run is not None:
            found = run.use_artifact(artifact, type=artifact_type)
        else:
            found = track.Api().artifact(artifact)
            if artifact_type is not None and found.type != artifact_type:
                raise ValueError(f"artifact {artifact!r} has type {found.type!r}")
        return str(found.download(root=None if save_dir is None else os.fspath(save_dir)))


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def _newest(paths: Mapping[str, Any]) -> str | None:
    existing = [p for p in paths if os.path.isfile(p)]
    return max(existing, key=_mtime) if existing else None
