"""fulmen.sweep: hyperparameter sweeps with W&B's sweep configs, Optuna as the search engine.

``fulmen.track.sweep`` and ``fulmen.track.agent`` (and ``fulmen sweep`` / ``fulmen agent``) are the
entry points; docs/sweeps.md is the manual. Importing this package does not import Optuna (the
bayes method and hyperband import it when they run).

Modules: ``_config`` (the schema), ``_space`` (distributions, grid, the Optuna mapping),
``_engine`` (the next configuration; hyperband's verdict), ``_controller`` (the Controller
protocol), ``_store`` (the controller's logic on a database, local or the server's) and ``_sql``
(its SQL), ``_local`` (the local SQLite controller), ``_remote`` (the server controller, over
HTTP), ``_analysis`` (parameter importance and correlation), ``_agent`` (the agent loop),
``_command`` (the command macros), ``_trial`` (what init() does inside a trial), ``_api`` (the
public functions).
"""

from __future__ import annotations

from fulmen.sweep._agent import Agent
from fulmen.sweep._api import ApiSweep, agent, set_state, sweep
from fulmen.sweep._config import SweepConfig, SweepConfigError, parse
from fulmen.sweep._controller import Claim, Controller, Trial
from fulmen.sweep._local import LocalController
from fulmen.sweep._remote import ServerController
from fulmen.sweep._trial import LockedConfig, SweepRun

__all__ = [
    "Agent",
    "ApiSweep",
    "Claim",
    "Controller",
    "LocalController",
    "LockedConfig",
    "ServerController",
    "SweepConfig",
    "SweepConfigError",
    "SweepRun",
    "Trial",
    "agent",
    "parse",
    "set_state",
    "sweep",
]
