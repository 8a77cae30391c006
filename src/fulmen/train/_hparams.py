"""``save_hyperparameters``: collect a module's ``__init__`` arguments from the caller's frames."""

from __future__ import annotations

import copy
import inspect
import types
import warnings
from argparse import Namespace
from collections.abc import Mapping, Sequence
from typing import Any


class AttributeDict(dict[str, Any]):
    """A dict whose keys are also attributes: ``hparams.lr`` is ``hparams["lr"]``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(f"no hyperparameter {key!r}; have {sorted(self)}") from exc

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]


def _init_args(obj: Any, frame: types.FrameType | None) -> dict[str, Any]:
    """Arguments of every ``__init__`` on the stack whose ``self`` is ``obj`` (subclass wins)."""
    found: list[dict[str, Any]] = []
    while frame is not None:
        local = frame.f_locals
        if frame.f_code.co_name == "__init__" and local.get("self") is obj:
            info = inspect.getargvalues(frame)
            args = {name: local[name] for name in info.args[1:] if name in local}
            if info.varargs is not None and local.get(info.varargs):
                args[info.varargs] = local[info.varargs]
            if info.keywords is not None:
                args.update(local.get(info.keywords) or {})
            found.append(args)
        frame = frame.f_back
    merged: dict[str, Any] = {}
    for args in reversed(found):  # outermost (the subclass) last, so it wins
        merged.update(args)
    return merged


def collect_hparams(
    obj: Any,
    args: Sequence[Any],
    ignore: str | Sequence[str] | None,
    frame: types.FrameType | None,
) -> dict[str, Any]:
    """What ``save_hyperparameters(*args, ignore=...)`` saves for ``obj``."""
    if len(args) == 1 and isinstance(args[0], Mapping | Namespace):
        params = dict(vars(args[0]) if isinstance(args[0], Namespace) else args[0])
    elif args and not all(isinstance(a, str) for a in args):
        raise ValueError(
            "save_hyperparameters(*args): pass names of __init__ arguments (str), or one "
            "dict / Namespace"
        )
    else:
        init = _init_args(obj, frame)
        if args:
            unknown = [a for a in args if a not in init]
            if unknown:
                raise ValueError(
                    f"save_hyperparameters: {unknown} are not arguments of "
                    f"{type(obj).__qualname__}.__init__ (it has {sorted(init)})"
                )
            params = {a: init[a] for a in args}
        else:
            params = init
    ignored = [ignore] if isinstance(ignore, str) else list(ignore or ())
    params = {k: v for k, v in params.items() if k not in ignored}
    import torch

    for key, value in params.items():
        if isinstance(value, torch.nn.Module):
            warnings.warn(
                f"save_hyperparameters: {key!r} is an nn.Module; its weights are already in the "
                f"checkpoint. Use save_hyperparameters(ignore=[{key!r}]).",
                UserWarning,
                stacklevel=4,
            )
    return params


def frozen_copy(params: Mapping[str, Any]) -> AttributeDict:
    try:
        return AttributeDict(copy.deepcopy(dict(params)))
    except Exception:  # an un-copyable value: keep the references
        return AttributeDict(params)
