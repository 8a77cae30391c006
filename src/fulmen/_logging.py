"""Where fulmen's diagnostics go: the standard library's ``logging``, under named loggers.

Each package logs to its own logger (``fulmen.train``, ``fulmen.track``, ``fulmen.server``, ...).
They are quiet by default, as a library's loggers should be: the ``fulmen`` logger carries a
``NullHandler``, so nothing is printed unless the program configures logging itself (records then
propagate to its handlers as usual) or asks fulmen to print them:

- the environment variable ``FULMEN_LOG_LEVEL`` (``debug``, ``info``, ``warning``, ``error``,
  ``critical``; any case), read once when ``fulmen`` is first imported;
- ``fulmen --log-level LEVEL <command>`` on the command line (the option wins over the variable).

Either adds one handler that writes ``time name level: message`` lines to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

ENV = "FULMEN_LOG_LEVEL"
LEVELS = ("debug", "info", "warning", "error", "critical")

_root = logging.getLogger("fulmen")
_root.addHandler(logging.NullHandler())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler fulmen adds on request (a class of its own, so it is added once)."""


def parse_level(value: str, source: str) -> int:
    """The ``logging`` level named by ``value``; a ``ValueError`` naming ``source`` if none."""
    name = value.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"{source} must be one of {', '.join(LEVELS)}; got {value!r}")
    return int(getattr(logging, name.upper()))


def configure(level: str, source: str = "--log-level") -> None:
    """Print fulmen's log records at ``level`` and above to stderr."""
    number = parse_level(level, source)
    handler = next((h for h in _root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        _root.addHandler(handler)
    _root.setLevel(number)


def configured() -> bool:
    """Whether ``configure`` (``--log-level``, ``FULMEN_LOG_LEVEL``) has added fulmen's handler."""
    return any(isinstance(h, _StderrHandler) for h in _root.handlers)


def configure_from_environment() -> None:
    """Apply ``FULMEN_LOG_LEVEL`` when it is set. A bad value warns (an import must not fail)."""
    value = os.environ.get(ENV)
    if not value:
        return
    try:
        configure(value, source=ENV)
    except ValueError as exc:
        warnings.warn(f"{exc}; fulmen's logging stays quiet", stacklevel=3)
