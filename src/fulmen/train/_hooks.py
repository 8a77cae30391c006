"""Who listens to each hook of a run, and calling them: the Trainer's one hook dispatcher.

``Hooks.prepare`` looks once per run at which classes override which hook (``is_overridden``): a
callback is called only for the hooks its class overrides, the module only for those its class
overrides, and a hook nobody overrides is "quiet": ``call`` returns at once (per step, the usual
case). ``call`` fires an event: the callbacks' hook, then the module's (its result is returned).
``batch_start``/``batch_end`` are the evaluation loops' pair: the callbacks always get
``dataloader_idx``, the module only when there are several dataloaders (Lightning's signatures).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from fulmen.train.callback import HOOKS, Callback

if TYPE_CHECKING:
    from fulmen.train.module import LightningModule
    from fulmen.train.trainer import Trainer

# called on callbacks only (the module has no such hooks)
_CALLBACK_ONLY = frozenset({"on_sanity_check_start", "on_sanity_check_end"})


def is_overridden(name: str, obj: Any, parent: type) -> bool:
    """Does ``obj`` define ``name`` otherwise than ``parent`` does?

    As in Lightning, the instance counts: ``model.validation_step = None`` turns the hook off,
    ``model.on_train_start = fn`` (or a callback's) turns it on."""
    attr = getattr(obj, name, None)
    if attr is None:
        return False
    return getattr(attr, "__func__", attr) is not getattr(parent, name, None)


_TAKES_BATCH_IDX: dict[Any, bool] = {}  # code object -> does the step take batch_idx?


def takes_batch_idx(step: Any) -> bool:
    """Does the step function accept ``batch_idx`` (``training_step(self, batch)`` does not)?

    Lightning's rule: a parameter named ``batch_idx``, ``*args``, or two positional parameters.
    Looked up per code object once, then a dict lookup (steps call it every batch)."""
    code = getattr(step, "__code__", None)
    found = _TAKES_BATCH_IDX.get(code) if code is not None else None
    if found is None:
        try:
            params = list(inspect.signature(step).parameters.values())
        except (TypeError, ValueError):  # a builtin or an odd callable: give it everything
            return True
        positional = [
            p
            for p in params
            if p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        found = (
            any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
            or any(p.name == "batch_idx" for p in params)
            or len(positional) >= 2
        )
        if code is not None:
            _TAKES_BATCH_IDX[code] = found
    return found


def name_culprit(exc: BaseException, where: str) -> None:
    """Add "(raised in ``where``)" to ``exc``'s notes (once)."""
    note = f"(raised in {where})"
    if hasattr(exc, "add_note"):
        if note not in getattr(exc, "__notes__", ()):
            exc.add_note(note)
    else:  # Python 3.10: keep the note where tools look for it
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


class Hooks:
    """The hooks of one Trainer's run: who overrides what, and calling them in order."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        # per hook, the callbacks whose class overrides it
        self.callbacks: dict[str, list[Callback]] = {hook: [] for hook in HOOKS}
        self.module: frozenset[str] = frozenset()  # the hooks the module's class overrides
        self.quiet: frozenset[str] = frozenset(HOOKS)  # the hooks nobody overrides

    def prepare(self, callbacks: list[Callback], module: LightningModule) -> None:
        """Look at who overrides which hook (once per run, after configure_callbacks)."""
        from fulmen.train.module import LightningModule

        self.callbacks = {
            hook: [cb for cb in callbacks if is_overridden(hook, cb, Callback)] for hook in HOOKS
        }
        self.module = frozenset(
            hook
            for hook in HOOKS
            if hook not in _CALLBACK_ONLY and is_overridden(hook, module, LightningModule)
        )
        self.quiet = frozenset(
            hook for hook in HOOKS if not self.callbacks[hook] and hook not in self.module
        )

    def call_one(self, cb: Callback, hook: str, *args: Any, **kwargs: Any) -> Any:
        """One callback's ``hook``; an error in it names the callback and the hook."""
        trainer = self.trainer
        trainer._fx = hook  # so that pl_module.log in a callback's hook knows where it is
        try:
            return getattr(cb, hook)(trainer, trainer.lightning_module, *args, **kwargs)
        except Exception as exc:
            name_culprit(exc, f"callback {type(cb).__name__}.{hook}")
            raise

    def call(self, hook: str, *args: Any, **kwargs: Any) -> Any:
        """The callbacks' ``hook`` (those that override it), then the module's (its result)."""
        if hook in self.quiet:  # the common case, per step: nobody listens
            return None
        try:
            callbacks = self.callbacks[hook]
        except KeyError:
            raise KeyError(
                f"{hook!r} is not a hook; the hooks are fulmen.train.callback.HOOKS"
            ) from None
        for cb in callbacks:
            self.call_one(cb, hook, *args, **kwargs)
        if hook not in self.module:  # a do-nothing hook of LightningModule
            return None
        trainer = self.trainer
        trainer._fx = hook
        return getattr(trainer.lightning_module, hook)(*args, **kwargs)

    def batch_start(
        self, prefix: str, batch: Any, batch_idx: int, dl_idx: int, several: bool
    ) -> None:
        """``on_{prefix}_batch_start`` of an evaluation loop (validation, test, predict)."""
        self._batch_hook(f"on_{prefix}_batch_start", (batch, batch_idx), dl_idx, several)

    def batch_end(
        self, prefix: str, output: Any, batch: Any, batch_idx: int, dl_idx: int, several: bool
    ) -> None:
        """``on_{prefix}_batch_end`` of an evaluation loop (validation, test, predict)."""
        self._batch_hook(f"on_{prefix}_batch_end", (output, batch, batch_idx), dl_idx, several)

    def _batch_hook(self, hook: str, args: tuple[Any, ...], dl_idx: int, several: bool) -> None:
        for cb in self.callbacks[hook]:
            self.call_one(cb, hook, *args, dl_idx)
        if hook in self.module:
            self.trainer._fx = hook
            getattr(self.trainer.lightning_module, hook)(*args, *((dl_idx,) if several else ()))
