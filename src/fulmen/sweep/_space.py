"""The search space: W&B's distributions sampled as W&B samples them, the grid, and each
distribution mapped onto Optuna's for the bayes method.

The Optuna mapping is exact in distribution: every parameter gets a *latent* Optuna distribution and
a transform from the latent value to the W&B value, chosen so that a latent drawn from Optuna's
prior gives the W&B distribution itself:

    uniform, int_uniform              FloatDistribution(min, max) / IntDistribution(min, max)
    log_uniform (exponents)           FloatDistribution(e**min, e**max, log=True)
    log_uniform_values                FloatDistribution(min, max, log=True)
    inv_log_uniform (exponents)       FloatDistribution(e**-max, e**-min, log=True)  (1/X of a
    inv_log_uniform_values            FloatDistribution(1/max, 1/min, log=True)       log-uniform
                                                                                     X is one)
    normal, log_normal                u ~ FloatDistribution(eps, 1-eps), mu + sigma * Phi^-1(u)
                                      (exp of it for log_normal): the inverse-CDF transform
    beta                              u ~ FloatDistribution(eps, 1-eps), BetaInv(u; a, b)
    q_* (quantized)                   the latent of the unquantized one, then round(x / q) * q
    values                            CategoricalDistribution over the indices of the values

(eps = 1e-6: the normal is cut at about 4.75 sigma.) Optuna is imported only by ``optuna_space``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from statistics import NormalDist
from typing import Any

from fulmen.sweep._config import Param

EPS = 1e-6
_STD_NORMAL = NormalDist()


def quantize(x: float, q: float) -> float:
    """W&B's quantization: ``round(x / q) * q`` (an int when q is an int)."""
    if isinstance(q, int):
        return round(x / q) * q
    return round(x / q) * q


def sample(param: Param, rng: random.Random) -> Any:  # noqa: PLR0912 (one per distribution)
    """One draw of ``param`` as W&B's random search draws it."""
    d = param.distribution
    if d == "constant":
        return param.value
    if d == "categorical":
        if param.probabilities is None:
            return param.values[rng.randrange(len(param.values))]
        return rng.choices(param.values, weights=param.probabilities)[0]
    if d == "int_uniform":
        return rng.randint(int(param.min), int(param.max))
    if d in ("uniform", "q_uniform"):
        x = rng.uniform(param.min, param.max)
    elif d in ("log_uniform", "q_log_uniform"):
        x = math.exp(rng.uniform(param.min, param.max))
    elif d in ("log_uniform_values", "q_log_uniform_values"):
        x = math.exp(rng.uniform(math.log(param.min), math.log(param.max)))
    elif d == "inv_log_uniform":
        x = math.exp(-rng.uniform(param.min, param.max))
    elif d == "inv_log_uniform_values":
        x = 1.0 / math.exp(rng.uniform(math.log(param.min), math.log(param.max)))
    elif d in ("normal", "q_normal"):
        x = rng.gauss(param.mu, param.sigma)
    elif d in ("log_normal", "q_log_normal"):
        x = math.exp(rng.gauss(param.mu, param.sigma))
    elif d in ("beta", "q_beta"):
        x = rng.betavariate(param.a, param.b)
    else:  # pragma: no cover (the config parser admits only the names above)
        raise ValueError(f"unknown distribution {d!r}")
    return quantize(x, param.q) if d.startswith("q_") else x


# --- the grid ---------------------------------------------------------------------------------


def grid_values(param: Param) -> list[Any]:
    """The points of ``param`` on the grid (the parser admits grid only for these kinds)."""
    d = param.distribution
    if d == "constant":
        return [param.value]
    if d == "categorical":
        return list(param.values)
    if d == "int_uniform":
        return list(range(int(param.min), int(param.max) + 1))
    if d == "q_uniform":
        low, high = round(param.min / param.q), round(param.max / param.q)
        return [quantize(k * param.q, param.q) for k in range(low, high + 1)]
    raise ValueError(f"parameter {param.name!r}: distribution {d!r} has no grid")


def grid_size(params: tuple[Param, ...]) -> int:
    return math.prod(len(grid_values(p)) for p in params)


def grid_point(params: tuple[Param, ...], index: int) -> dict[str, Any]:
    """The ``index``-th point of the grid, in ``itertools.product`` order (first varies slowest)."""
    out: dict[str, Any] = {}
    for p in reversed(params):
        values = grid_values(p)
        index, at = divmod(index, len(values))
        out[p.name] = values[at]
    return {p.name: out[p.name] for p in params}


def finite_size(params: tuple[Param, ...]) -> int | None:
    """How many distinct configurations random search can draw, or None when unbounded."""
    if all(
        p.distribution in ("constant", "categorical", "int_uniform", "q_uniform") for p in params
    ):
        return grid_size(params)
    return None


# --- values ---------------------------------------------------------------------------------


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"opt.lr": 0.1}`` -> ``{"opt": {"lr": 0.1}}`` (nested sweep parameters)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def key_of(flat: dict[str, Any]) -> str:
    """A digest that is equal for equal configurations (the no-duplicates index)."""
    text = json.dumps(flat, sort_keys=True, default=repr, allow_nan=True)
    return hashlib.sha1(text.encode()).hexdigest()


# --- Optuna (bayes) ---------------------------------------------------------------------------


def optuna_space(params: tuple[Param, ...]) -> dict[str, Any]:
    """name -> the latent Optuna distribution of each searchable parameter (see the docstring)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space: dict[str, Any] = {}
    for p in params:
        if not p.searchable:
            continue
        d = p.distribution.removeprefix("q_")
        if p.distribution == "categorical":
            space[p.name] = CategoricalDistribution(tuple(range(len(p.values))))
        elif d == "int_uniform":
            space[p.name] = IntDistribution(int(p.min), int(p.max))
        elif d == "uniform":
            space[p.name] = FloatDistribution(p.min, p.max)
        elif d == "log_uniform":
            space[p.name] = FloatDistribution(math.exp(p.min), math.exp(p.max), log=True)
        elif d == "log_uniform_values":
            space[p.name] = FloatDistribution(p.min, p.max, log=True)
        elif d == "inv_log_uniform":
            space[p.name] = FloatDistribution(math.exp(-p.max), math.exp(-p.min), log=True)
        elif d == "inv_log_uniform_values":
            space[p.name] = FloatDistribution(1.0 / p.max, 1.0 / p.min, log=True)
        else:  # normal, log_normal, beta: the inverse-CDF transform of a uniform latent
            space[p.name] = FloatDistribution(EPS, 1.0 - EPS)
    return space


def from_latent(param: Param, latent: Any) -> Any:
    """The W&B value of a latent Optuna value (``optuna_space``); constants give their value."""
    d = param.distribution
    if d == "constant":
        return param.value
    if d == "categorical":
        return param.values[int(latent)] if param.searchable else param.values[0]
    if d == "int_uniform":
        return int(latent)
    base = d.removeprefix("q_")
    x = float(latent)
    if base in ("normal", "log_normal"):
        x = param.mu + param.sigma * _STD_NORMAL.inv_cdf(x)
        if base == "log_normal":
            x = math.exp(x)
    elif base == "beta":
        x = beta_ppf(x, param.a, param.b)
    return quantize(x, param.q) if d.startswith("q_") else x


def beta_ppf(u: float, a: float, b: float) -> float:
    """The inverse CDF of Beta(a, b) at ``u`` (bisection on the regularized incomplete beta)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if _betainc(a, b, mid) < u:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta I_x(a, b): a continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only on this side
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            numerator = 1.0
        elif i % 2 == 0:
            numerator = (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            numerator = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + numerator * d
        d = tiny if abs(d) < tiny else d
        d = 1.0 / d
        c = 1.0 + numerator / c
        c = tiny if abs(c) < tiny else c
        f *= c * d
        if abs(1.0 - c * d) < 1e-14:
            break
    return front * (f - 1.0)


def to_latent(param: Param, value: Any) -> Any:
    """The latent Optuna value of a W&B value (a prior run's config), or None when it has none."""
    d, base = param.distribution, param.distribution.removeprefix("q_")
    try:
        if d == "categorical":
            return param.values.index(value) if value in param.values else None
        if d == "int_uniform":
            return int(value) if param.min <= value <= param.max else None
        x = float(value)
        if base in ("normal", "log_normal"):
            x = math.log(x) if base == "log_normal" else x
            return min(max(_STD_NORMAL.cdf((x - param.mu) / param.sigma), EPS), 1 - EPS)
        if base == "beta":
            return min(max(_betainc(param.a, param.b, x), EPS), 1 - EPS)
        return x  # uniform and the log kinds: the latent is the value itself
    except (TypeError, ValueError):
        return None
