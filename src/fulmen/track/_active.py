"""The active run, which the module-level functions act on, and the hooks that end it when the
program ends: ``atexit`` (finished, or failed/killed after an uncaught exception), SIGTERM (killed).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from types import TracebackType
from typing import Any

ACTIVE: list[Any] = []
_HOOKS = {"installed": False}
_EXCEPTION: list[type[BaseException]] = []


def active() -> Any:
    return ACTIVE[-1] if ACTIVE else None


def deactivate(run: Any) -> None:
    if run in ACTIVE:
        ACTIVE.remove(run)


def install_exit_hooks() -> None:
    if _HOOKS["installed"]:
        return
    _HOOKS["installed"] = True
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        _EXCEPTION.append(kind)
        previous(kind, exc, tb)

    sys.excepthook = excepthook
    atexit.register(_finish_at_exit)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)


def _finish_at_exit() -> None:
    for run in list(ACTIVE):
        if _EXCEPTION:
            kind = _EXCEPTION[-1]
            run._finish(130 if issubclass(kind, KeyboardInterrupt) else 1, state_for(kind))
        else:
            run.finish()


def state_for(kind: type[BaseException]) -> str:
    return "killed" if issubclass(kind, KeyboardInterrupt) else "failed"


def _on_sigterm(signum: int, frame: Any) -> None:
    for run in list(ACTIVE):
        run._finish(128 + signum, "killed")
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
