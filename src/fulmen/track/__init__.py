"""fulmen.track: the experiment tracker client (runs, config, history, summary, artifacts, Api).

Importing it must not import torch: torch is imported inside the functions that receive a tensor or
a module. ``import fulmen.track as wandb`` is the porting path for wandb scripts.
"""

__all__: list[str] = []
