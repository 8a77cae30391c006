"""Small helpers users import by name: ``rank_zero_only``, ``seed_everything``, rank-zero printing.

The process's global rank is read once from the environment variables the launchers set (``RANK``,
``SLURM_PROCID``, ``OMPI_COMM_WORLD_RANK``, ...); a strategy that knows better sets
``rank_zero_only.rank`` itself.
"""

from __future__ import annotations

import functools
import os
import random
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "MisconfigurationException",
    "PossibleUserWarning",
    "global_rank_from_env",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "seed_everything",
]

_F = TypeVar("_F", bound=Callable[..., Any])


class MisconfigurationException(ValueError):
    """A Trainer, callback or module argument is wrong (Lightning's exception, a ValueError)."""


class PossibleUserWarning(UserWarning):
    """Something that is often a mistake but may be meant (Lightning's warning category)."""


_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "JSM_NAMESPACE_RANK")


def global_rank_from_env() -> int:
    """The global rank the launcher gave this process (0 when none did)."""
    for key in _RANK_VARIABLES:
        value = os.environ.get(key)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


class _RankZeroOnly:
    """Decorator: the wrapped function runs on global rank zero only (else it returns None).

    ``rank_zero_only.rank`` holds the rank it compares with; strategies update it.
    """

    def __init__(self) -> None:
        self.rank = global_rank_from_env()

    def __call__(self, fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.rank == 0:
                return fn(*args, **kwargs)
            return None

        return wrapped  # type: ignore[return-value]


rank_zero_only = _RankZeroOnly()


@rank_zero_only
def rank_zero_warn(
    message: str, category: type[Warning] = UserWarning, stacklevel: int = 3
) -> None:
    """``warnings.warn`` on global rank zero only."""
    warnings.warn(message, category, stacklevel=stacklevel)


@rank_zero_only
def rank_zero_info(message: str) -> None:
    """``print`` on global rank zero only."""
    print(message)


def seed_everything(seed: int | None = None, workers: bool = False) -> int:
    """Seed Python's ``random``, NumPy and torch (all devices); return the seed used.

    ``seed=None`` reads ``PL_GLOBAL_SEED`` from the environment, else uses 0. ``workers=True`` sets
    ``PL_SEED_WORKERS=1`` so dataloader workers are seeded too, as in Lightning.
    """
    import numpy as np
    import torch

    if seed is None:
        env = os.environ.get("PL_GLOBAL_SEED")
        seed = int(env) if env is not None else 0
    seed = int(seed)
    if not (np.iinfo(np.uint32).min <= seed <= np.iinfo(np.uint32).max):
        raise ValueError(f"seed_everything: seed must fit in 32 bits, got {seed}")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = str(int(workers))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every device too
    return seed
