"""``Run.config`` and ``Run.summary``: dict-like views whose every change is one run-log record."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from fulmen.track._replay import SummaryState
from fulmen.track._values import SURROGATE_HINT, check_json, has_surrogate, jsonable


def as_mapping(obj: Any, what: str = "config") -> dict[str, Any]:
    """A dict from a mapping, an argparse Namespace, a dataclass instance, or None."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    argparse = sys.modules.get("argparse")  # a Namespace exists only when argparse was imported
    if argparse is not None and isinstance(obj, argparse.Namespace):
        return dict(vars(obj))
    fields = getattr(obj, "__dataclass_fields__", None)
    if fields is not None and not isinstance(obj, type):
        return {name: getattr(obj, name) for name in fields}
    if hasattr(obj, "keys") and hasattr(obj, "__getitem__"):
        return {k: obj[k] for k in obj.keys()}  # noqa: SIM118 (mapping-like, not a dict)
    raise TypeError(
        f"{what} must be a dict, an argparse.Namespace, a dataclass or a mapping; got "
        f"{type(obj).__name__}"
    )


def prepare(what: str, items: Mapping[Any, Any]) -> dict[str, Any]:
    """``items`` as the JSON a record holds, checked before anything is written: non-empty string
    keys, at most ``MAX_DEPTH`` levels of nesting, no int beyond the float range, no key with a
    lone surrogate; a clear error naming the key otherwise."""
    out: dict[str, Any] = {}
    for key, value in items.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{what} keys must be non-empty strings, got {key!r}")
        if has_surrogate(key):
            raise ValueError(f"{what} key {key!r} {SURROGATE_HINT}")
        try:
            new = jsonable(value, depth=2)
        except ValueError as exc:
            raise ValueError(f"{what} key {key!r}: {exc}") from None
        check_json(f"{what} key {key!r}", new, depth=2)
        out[key] = new
    return out


class Config:
    """The run's hyperparameters: ``config.lr``, ``config["lr"]``, ``config.update(d)``.

    Values that JSON cannot hold become strings; nested dicts are kept as they are. Changing a key
    that already has a different value needs ``allow_val_change=True`` (W&B's rule).
    """

    _data: dict[str, Any]
    _on_change: Callable[[dict[str, Any]], None] | None

    def __init__(self, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        object.__setattr__(self, "_data", {})
        object.__setattr__(self, "_on_change", on_change)

    def update(self, d: Any = None, allow_val_change: bool = False, **kwargs: Any) -> None:
        """Merge ``d`` (and keyword arguments) in, as one record."""
        items = as_mapping(d)
        items.update(kwargs)
        changed: dict[str, Any] = {}
        for key, new in prepare("config", items).items():
            old = self._data.get(key, _MISSING)
            if old is not _MISSING and old != new and not allow_val_change:
                raise ValueError(
                    f"config key {key!r} already has the value {old!r}; to change it to {new!r}"
                    " pass allow_val_change=True"
                )
            if old != new:
                changed[key] = new
        if not changed:
            return
        self._data.update(changed)
        if self._on_change is not None:
            self._on_change(changed)

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        """Set the keys of ``d`` that the config does not have yet."""
        self.update({k: v for k, v in d.items() if k not in self._data})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def keys(self) -> Any:
        return self._data.keys()

    def items(self) -> Any:
        return self._data.items()

    def values(self) -> Any:
        return self._data.values()

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


_MISSING = object()


class Summary(MutableMapping[str, Any]):
    """The run's summary: last value of each metric (or what ``define_metric`` asked for), plus
    whatever the user sets. Setting or deleting a key writes one record."""

    def __init__(
        self,
        state: SummaryState,
        on_change: Callable[[dict[str, Any], list[str]], None] | None = None,
    ) -> None:
        self._state = state
        self._on_change = on_change

    def __getitem__(self, key: str) -> Any:
        return self._state.result()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        if key not in self._state.result():
            raise KeyError(key)
        self._state.remove(key)
        if self._on_change is not None:
            self._on_change({}, [key])

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        values = prepare("summary", dict(other, **kwargs))
        for key, value in values.items():
            self._state.set(key, value)
        if self._on_change is not None and values:
            self._on_change(values, [])

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.result())

    def __len__(self) -> int:
        return len(self._state.result())

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._state.result()[key]
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __repr__(self) -> str:
        return f"Summary({self._state.result()!r})"
