"""``mode="disabled"``: a run that records nothing, so user code runs unchanged at no cost."""

from __future__ import annotations

from typing import Any

from fulmen.track._active import deactivate
from fulmen.track._artifacts import Artifact
from fulmen.track._config import Config, Summary
from fulmen.track._replay import SummaryState
from fulmen.track._settings import Settings


class DisabledRun:
    """Every method of ``Run``, doing nothing; config and summary work in memory only."""

    mode = "disabled"
    resumed = False
    url = None
    state = _state = "disabled"  # _state: what a Run keeps it in (WandbLogger reads that)
    step = 0
    disabled = True

    def __init__(self, settings: Settings, config: Any = None) -> None:
        self.id = settings.id or "disabled"
        self.name = settings.name or "disabled"
        self.project = settings.project
        self.entity = settings.entity
        self.group = settings.group
        self.job_type = settings.job_type
        self.tags = tuple(settings.tags)
        self.notes = settings.notes
        self.dir = ""
        self.path = f"{self.project}/{self.id}"
        self.config = Config()
        if config is not None:
            self.config.update(config)
        self.summary = Summary(SummaryState())

    def log(self, data: Any, step: Any = None, commit: Any = None) -> None:
        """Does nothing."""

    def define_metric(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"name": name}

    def alert(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing."""

    def mark_preempting(self) -> None:
        """Does nothing."""

    def watch(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing."""

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing."""

    def save(self, path: str, base_path: str | None = None) -> None:
        """Does nothing."""

    def save_file(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing."""

    def log_artifact(self, artifact: Any, *args: Any, **kwargs: Any) -> Any:
        return artifact

    def use_artifact(self, artifact_or_name: Any, type: str | None = None) -> Artifact:
        if isinstance(artifact_or_name, Artifact):
            return artifact_or_name
        return Artifact(str(artifact_or_name).partition(":")[0], type or "unspecified")

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        deactivate(self)

    def __enter__(self) -> DisabledRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def __repr__(self) -> str:
        return "<DisabledRun>"
