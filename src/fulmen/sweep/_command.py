"""The trial's command line: the config's ``command`` with its macros expanded (W&B's macros).

``${args}`` and its variants are built from the flat parameters (a nested parameter is the dotted
``--opt.lr=0.1``); ``${args_json}`` and ``${args_json_file}`` carry the nested dict. A command item
that is exactly a macro becomes as many argv items as the macro has; a macro inside a longer item
is replaced by its items joined with spaces.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from fulmen.sweep._config import SweepConfig, SweepConfigError

_MACRO = re.compile(r"\$\{([^}]*)\}")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)) or value is None:
        return json.dumps(value)
    return str(value)  # W&B writes booleans as True / False


def expansions(
    config: SweepConfig, flat: dict[str, Any], nested: dict[str, Any], json_file: Path
) -> dict[str, list[str]]:
    """Each macro (without ``${}``) and the argv items it stands for."""
    pairs = [(k, _text(v)) for k, v in flat.items()]
    env = ["/usr/bin/env"] if os.path.exists("/usr/bin/env") else []
    return {
        "env": env,
        "interpreter": [sys.executable],
        "program": [config.program] if config.program else [],
        "args": [f"--{k}={v}" for k, v in pairs],
        "args_no_equals": [item for k, v in pairs for item in (f"--{k}", v)],
        "args_no_hyphens": [f"{k}={v}" for k, v in pairs],
        "args_no_boolean_flags": [
            f"--{k}" if v is True else f"--{k}={_text(v)}"
            for k, v in flat.items()
            if v is not False
        ],
        "args_json": [json.dumps(nested)],
        "args_json_file": [str(json_file)],
        "args_append_hydra": [f"+{k}={v}" for k, v in pairs],
        "args_override_hydra": [f"++{k}={v}" for k, v in pairs],
    }


def build(
    config: SweepConfig, flat: dict[str, Any], nested: dict[str, Any], json_file: Path
) -> list[str]:
    """The argv of one trial."""
    table = expansions(config, flat, nested, json_file)
    uses_program = any("${program}" in item for item in config.command)
    if uses_program and not config.program:
        raise SweepConfigError(
            "sweep config: 'program' is required: the command uses ${program} (the default "
            "command is ${env} ${interpreter} ${program} ${args})"
        )
    argv: list[str] = []
    for item in config.command:
        whole = _MACRO.fullmatch(item)
        if whole is not None and whole.group(1) in table:
            argv += table[whole.group(1)]
            continue
        argv.append(_MACRO.sub(lambda m: " ".join(_one(m.group(1), table)), item))
    return argv


def _one(macro: str, table: dict[str, list[str]]) -> list[str]:
    if macro.startswith("envvar:"):
        name = macro[len("envvar:") :]
        if name not in os.environ:
            raise SweepConfigError(
                f"sweep config: command uses ${{envvar:{name}}} but {name} is not set"
            )
        return [os.environ[name]]
    return table[macro]
