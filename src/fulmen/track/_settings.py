"""Settings and their one precedence: argument, FULMEN_* variable, WANDB_* variable, settings
file, default. docs/track.md has the same table; ``SETTINGS`` below is its source.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fulmen.track._values import SURROGATE_HINT, has_surrogate

# name -> (FULMEN variable, WANDB variable or "", default)
SETTINGS: dict[str, tuple[str, str, Any]] = {
    "project": ("FULMEN_PROJECT", "WANDB_PROJECT", "uncategorized"),
    "entity": ("FULMEN_ENTITY", "WANDB_ENTITY", None),
    "name": ("FULMEN_NAME", "WANDB_NAME", None),
    "id": ("FULMEN_RUN_ID", "WANDB_RUN_ID", None),
    "group": ("FULMEN_RUN_GROUP", "WANDB_RUN_GROUP", None),
    "job_type": ("FULMEN_JOB_TYPE", "WANDB_JOB_TYPE", None),
    "tags": ("FULMEN_TAGS", "WANDB_TAGS", ()),
    "notes": ("FULMEN_NOTES", "WANDB_NOTES", None),
    "mode": ("FULMEN_MODE", "WANDB_MODE", None),
    "dir": ("FULMEN_DIR", "WANDB_DIR", "."),
    "resume": ("FULMEN_RESUME", "WANDB_RESUME", None),
    "anonymous": ("FULMEN_ANONYMOUS", "WANDB_ANONYMOUS", None),
    "base_url": ("FULMEN_BASE_URL", "WANDB_BASE_URL", None),
    "api_key": ("FULMEN_API_KEY", "WANDB_API_KEY", None),
    "console": ("FULMEN_CONSOLE", "WANDB_CONSOLE", True),
    "stats_interval": ("FULMEN_STATS_INTERVAL", "", 15.0),
    "disable_git": ("FULMEN_DISABLE_GIT", "WANDB_DISABLE_GIT", False),
    "silent": ("FULMEN_SILENT", "WANDB_SILENT", False),
}
SETTINGS_FILE_VARIABLE = "FULMEN_SETTINGS_FILE"
DEFAULT_SETTINGS_FILE = Path("~/.config/fulmen/settings")
MODES = ("online", "offline", "disabled")
RESUME_MODES = ("allow", "must", "never", "auto")
_NAME_BAD = re.compile(r"[/\\\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_OK = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Settings:
    """Resolved settings of one run (see docs/track.md, "Settings")."""

    def __init__(self) -> None:
        self.project: str = "uncategorized"
        self.entity: str | None = None
        self.name: str | None = None
        self.id: str | None = None
        self.group: str | None = None
        self.job_type: str | None = None
        self.tags: tuple[str, ...] = ()
        self.notes: str | None = None
        self.mode: str = "offline"
        self.dir: Path = Path(".")
        self.resume: str | None = None
        self.anonymous: bool | None = None
        self.base_url: str | None = None
        self.api_key: str | None = None
        self.console: bool = True
        self.stats_interval: float = 15.0
        self.disable_git: bool = False
        self.silent: bool = False
        self.mode_note: str | None = None  # the one line printed when online falls back


def settings_file() -> dict[str, str]:
    path = Path(os.environ.get(SETTINGS_FILE_VARIABLE) or DEFAULT_SETTINGS_FILE).expanduser()
    if not path.is_file():
        return {}
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise ValueError(f"settings file {path} is not valid: {exc}") from exc
    return dict(parser["default"]) if parser.has_section("default") else {}


def resolve(arguments: Mapping[str, Any]) -> Settings:
    """Resolve every setting: argument, FULMEN_*, WANDB_*, settings file, default."""
    from_file: dict[str, str] | None = None
    raw: dict[str, Any] = {}
    for name, (fulmen_var, wandb_var, default) in SETTINGS.items():
        value = arguments.get(name)
        if value is None:
            value = os.environ.get(fulmen_var) or (os.environ.get(wandb_var) if wandb_var else None)
        if value is None:
            if from_file is None:
                from_file = settings_file()
            value = from_file.get(name)
        raw[name] = default if value is None else value
    s = Settings()
    for name in ("project", "entity", "notes"):
        value = raw[name]
        if value is not None:
            setattr(s, name, check_name(name, value, allow_separators=name == "notes"))
    for name in DISPLAY_NAMES:  # free text, as in W&B: "resnet/lr=0.1", "<b>x</b>", any Unicode
        value = raw[name]
        if value is not None:
            setattr(s, name, check_display_name(name, value))
    s.id = None if raw["id"] is None else check_id(raw["id"])
    s.tags = _tags(raw["tags"])
    s.dir = Path(raw["dir"]).expanduser().absolute()
    s.resume = _resume(raw["resume"])
    s.anonymous = _anonymous(raw["anonymous"])
    s.base_url = raw["base_url"] or None
    s.api_key = raw["api_key"] or None
    s.console = _console(raw["console"])
    s.stats_interval = _float("stats_interval", raw["stats_interval"])
    s.disable_git = _bool("disable_git", raw["disable_git"])
    s.silent = _bool("silent", raw["silent"])
    s.mode = _mode(raw["mode"], s)
    return s


def check_name(what: str, value: object, *, allow_separators: bool = False) -> str:
    """A project, entity, run or group name: a non-empty string with no path separators or
    control characters (it may become part of a path or URL)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    if not value or (len(value) > 128 and not allow_separators):
        raise ValueError(f"{what} must be 1 to 128 characters long, got {len(value)}")
    if has_surrogate(value):
        raise ValueError(f"{what} {value!r} {SURROGATE_HINT}")
    if not allow_separators and (_NAME_BAD.search(value) or value in (".", "..")):
        raise ValueError(
            f"{what} {value!r} contains a path separator or control character, or is '.'/'..'; "
            "use letters, digits, spaces and -_.:"
        )
    return value


DISPLAY_NAMES = ("name", "group", "job_type")
MAX_DISPLAY_NAME = 128  # W&B's limit for a run's display name


def check_display_name(what: str, value: object) -> str:
    """A run's display name, group or job type: free text (any Unicode, ``/`` included) of 1 to
    128 characters on one line. Never part of a path: pages and the API escape it."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    if not value or len(value) > MAX_DISPLAY_NAME:
        raise ValueError(
            f"{what} must be 1 to {MAX_DISPLAY_NAME} characters long, got {len(value)}"
        )
    if has_surrogate(value):  # it could not be stored as given (see the run log's "Strings")
        raise ValueError(f"{what} {value!r} {SURROGATE_HINT}")
    if _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} contains a control character (a newline, a tab...)")
    return value


# W&B settings that change nothing here (fulmen has no service process, no code saving, no
# interactive prompts); accepted by ``Settings`` so that scripts passing them run unchanged.
IGNORED_WANDB_SETTINGS = frozenset(
    {
        "start_method",
        "init_timeout",
        "save_code",
        "code_dir",
        "program",
        "show_info",
        "show_warnings",
        "show_errors",
        "show_emoji",
        "allow_val_change",
        "disable_code",
        "disable_job_creation",
        "x_disable_meta",
        "_disable_meta",
        "x_disable_machine_info",
        "_disable_machine_info",
        "x_service_wait",
        "_service_wait",
        "reinit",
    }
)
# W&B setting -> (fulmen setting, value transform)
_WANDB_SETTING_ALIASES: dict[str, tuple[str, Any]] = {
    "quiet": ("silent", bool),
    "x_disable_stats": ("stats_interval", lambda off: 0.0 if off else None),
    "_disable_stats": ("stats_interval", lambda off: 0.0 if off else None),
    "x_stats_sampling_interval": ("stats_interval", float),
    "_stats_sample_rate_seconds": ("stats_interval", float),
    "run_name": ("name", str),
    "run_id": ("id", str),
    "run_group": ("group", str),
    "run_job_type": ("job_type", str),
    "run_tags": ("tags", tuple),
    "run_notes": ("notes", str),
    "root_dir": ("dir", str),
    "api_key": ("api_key", str),
    "base_url": ("base_url", str),
}


class UserSettings(dict[str, Any]):
    """``wandb.Settings(...)`` for ``init(settings=...)``: fulmen's settings (the table in
    docs/track.md) by name, plus W&B's names for them (``quiet``, ``x_disable_stats``,
    ``run_name``...). W&B settings that mean nothing here (``start_method``, ``init_timeout``...)
    are accepted and ignored; an unknown name is a TypeError naming it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        for key, value in kwargs.items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if key in SETTINGS:
            super().__setitem__(key, value)
        elif key in _WANDB_SETTING_ALIASES:
            name, convert = _WANDB_SETTING_ALIASES[key]
            converted = None if value is None else convert(value)
            if converted is not None:
                super().__setitem__(name, converted)
        elif key not in IGNORED_WANDB_SETTINGS:
            raise TypeError(
                f"Settings({key}=...): unknown setting; fulmen knows {', '.join(sorted(SETTINGS))} "
                "(and W&B's names for them)"
            )

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def check_id(value: object) -> str:
    if not isinstance(value, str) or not _ID_OK.match(value) or value in (".", ".."):
        raise ValueError(f"run id must be 1 to 64 characters from A-Z a-z 0-9 _ . -, got {value!r}")
    return value


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    tags = tuple(value)
    for tag in tags:
        if not isinstance(tag, str) or not tag or len(tag) > 64:
            raise ValueError(f"tags must be strings of 1 to 64 characters, got {tag!r}")
        if has_surrogate(tag):
            raise ValueError(f"tag {tag!r} {SURROGATE_HINT}")
    return tags


def _resume(value: Any) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return "auto"
    if isinstance(value, str) and value.lower() in RESUME_MODES:
        return value.lower()
    if isinstance(value, str) and value.lower() in _TRUE:
        return "auto"
    if isinstance(value, str) and value.lower() in _FALSE:
        return None
    raise ValueError(
        f"resume must be one of {', '.join(RESUME_MODES)}, True or None; got {value!r}"
    )


def _anonymous(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("allow", "must") or text in _TRUE:
        return True
    if text == "never" or text in _FALSE:
        return False
    raise ValueError(f"anonymous must be True, False or None; got {value!r}")


def _console(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("off", "false", "0", "no"):
        return False
    if text in ("on", "true", "1", "yes", "auto", "wrap", "redirect"):
        return True
    raise ValueError(f"console must be 'on' or 'off'; got {value!r}")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"{name} must be true or false; got {value!r}")


def _float(name: str, value: Any) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds; got {value!r}") from None
    if result < 0 or math.isnan(result):
        raise ValueError(f"{name} must be >= 0 (0 turns it off); got {value!r}")
    return result


def _mode(value: Any, s: Settings) -> str:
    text = ("online" if s.base_url else "offline") if value is None else str(value).lower()
    text = {"dryrun": "offline", "run": "online"}.get(text, text)
    if text not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {value!r}")
    if text == "online" and not s.base_url:
        s.mode_note = (
            "fulmen: mode is online but no server is configured (FULMEN_BASE_URL); "
            "logging offline (sync later with `fulmen sync`)"
        )
        return "offline"
    if text == "online" and s.anonymous is False and not s.api_key:
        raise ValueError(
            "anonymous=False requires credentials: set FULMEN_API_KEY (or api_key in the "
            "settings file) to log to the server"
        )
    return text
