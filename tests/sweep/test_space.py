"""Distributions sampled as W&B samples them, and mapped exactly onto Optuna's (bayes)."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

import pytest

from fulmen.sweep import parse
from fulmen.sweep._engine import propose
from fulmen.sweep._space import (
    beta_ppf,
    from_latent,
    grid_point,
    grid_size,
    optuna_space,
    sample,
    to_latent,
)
from tests.sweep.test_config import EVERY_DISTRIBUTION

N = 4000


def _param(name: str) -> Any:
    spec = {"distribution": name, **EVERY_DISTRIBUTION[name]}
    return parse({"method": "random", "parameters": {"p": spec}}).parameters[0]


def _support_ok(name: str, value: float) -> bool:  # noqa: PLR0911
    s = EVERY_DISTRIBUTION[name]
    lo, hi = s.get("min"), s.get("max")
    if name in ("uniform", "int_uniform", "log_uniform_values"):
        return lo <= value <= hi
    if name == "log_uniform":
        return math.exp(lo) <= value <= math.exp(hi)
    if name == "inv_log_uniform":
        return math.exp(-hi) <= value <= math.exp(-lo)
    if name == "inv_log_uniform_values":
        return 1 / hi <= value <= 1 / lo
    if name in ("beta",):
        return 0 <= value <= 1
    if name in ("log_normal",):
        return value > 0
    if name.startswith("q_"):  # a multiple of q
        q = s["q"]
        return math.isclose(value / q, round(value / q), abs_tol=1e-9)
    return True


@pytest.mark.parametrize("name", sorted(EVERY_DISTRIBUTION))
def test_random_draws_lie_in_the_support(name: str) -> None:
    p = _param(name)
    rng = random.Random(1)
    values = [sample(p, rng) for _ in range(500)]
    assert all(_support_ok(name, v) for v in values)
    if name == "int_uniform" or (name.startswith("q_") and isinstance(p.q, int)):
        assert all(isinstance(v, int) for v in values)


@pytest.mark.parametrize("name", sorted(EVERY_DISTRIBUTION))
def test_the_optuna_latent_maps_onto_the_same_distribution(name: str) -> None:
    # A latent drawn from Optuna's prior (uniform, or log-uniform when log=True), then mapped,
    # must have W&B's distribution: same support, and the same mean as W&B's own draws.
    p = _param(name)
    dist = optuna_space((p,))["p"]
    rng = random.Random(2)
    mapped = []
    n = N // 4 if "beta" in name else N  # the beta inverse CDF is a bisection: slower
    for _ in range(n):
        if getattr(dist, "log", False):
            latent: float = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
        elif hasattr(dist, "step") and type(dist).__name__ == "IntDistribution":
            latent = rng.randint(dist.low, dist.high)
        else:
            latent = rng.uniform(dist.low, dist.high)
        mapped.append(from_latent(p, latent))
    direct = [sample(p, random.Random(3 + i)) for i in range(n)]
    assert all(_support_ok(name, v) for v in mapped)
    spread = statistics.pstdev(direct) or 1.0
    assert abs(statistics.fmean(mapped) - statistics.fmean(direct)) < 0.1 * spread + 1e-9


@pytest.mark.parametrize(
    ("name", "kind", "log"),
    [
        ("uniform", "FloatDistribution", False),
        ("int_uniform", "IntDistribution", False),
        ("log_uniform", "FloatDistribution", True),
        ("log_uniform_values", "FloatDistribution", True),
        ("inv_log_uniform", "FloatDistribution", True),
        ("inv_log_uniform_values", "FloatDistribution", True),
        ("q_log_uniform_values", "FloatDistribution", True),
    ],
)
def test_log_kinds_use_optunas_log_scale(name: str, kind: str, log: bool) -> None:
    dist = optuna_space((_param(name),))["p"]
    assert type(dist).__name__ == kind
    assert getattr(dist, "log", False) is log


def test_bounds_of_the_log_mappings_are_exact() -> None:
    d = optuna_space((_param("log_uniform"),))["p"]
    assert (d.low, d.high) == (math.exp(-5), math.exp(0))
    d = optuna_space((_param("inv_log_uniform_values"),))["p"]
    assert (d.low, d.high) == (1 / 100, 1 / 1)


def test_values_map_to_indices_and_back() -> None:
    config = parse({"method": "bayes", "metric": {"name": "m"},
                    "parameters": {"act": {"values": ["relu", {"k": 1}, [1, 2]]}}})  # fmt: skip
    p = config.parameters[0]
    dist = optuna_space(config.parameters)["act"]
    assert dist.choices == (0, 1, 2)
    assert [from_latent(p, i) for i in range(3)] == ["relu", {"k": 1}, [1, 2]]
    assert to_latent(p, {"k": 1}) == 1


def test_latents_invert() -> None:
    for name in ("uniform", "normal", "log_normal", "beta", "log_uniform_values"):
        p = _param(name)
        for latent in (0.2, 0.5, 0.8) if name in ("normal", "log_normal", "beta") else ():
            assert math.isclose(to_latent(p, from_latent(p, latent)), latent, rel_tol=1e-6)


def test_beta_inverse_cdf() -> None:
    assert math.isclose(beta_ppf(0.5, 2, 2), 0.5, abs_tol=1e-9)
    assert math.isclose(beta_ppf(0.3, 1, 1), 0.3, abs_tol=1e-9)
    # Beta(2, 1) has CDF x**2
    assert math.isclose(beta_ppf(0.25, 2, 1), 0.5, abs_tol=1e-9)


def test_grid_is_the_product_in_order() -> None:
    config = parse({"method": "grid", "parameters": {
        "a": {"values": [1, 2]}, "b": {"min": 0, "max": 2}, "c": {"value": "x"},
        "d": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.5}}})  # fmt: skip
    assert grid_size(config.parameters) == 2 * 3 * 1 * 3
    points = [grid_point(config.parameters, i) for i in range(18)]
    assert points[0] == {"a": 1, "b": 0, "c": "x", "d": 0.0}
    assert points[-1] == {"a": 2, "b": 2, "c": "x", "d": 1.0}
    assert len({tuple(p.values()) for p in points}) == 18


def test_bayes_proposes_values_of_every_distribution() -> None:
    params = {name: {"distribution": name, **spec} for name, spec in EVERY_DISTRIBUTION.items()}
    params["act"] = {"values": ["a", "b"]}
    config = parse({"method": "bayes", "metric": {"name": "m"}, "parameters": params})
    proposal = propose(config, [], set(), seed=0, number=0)
    assert proposal is not None
    for p in config.parameters:
        value = proposal.params[p.name]
        if p.name == "act":
            assert value in ("a", "b")
        else:
            assert _support_ok(p.name, value), (p.name, value)


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_bayes_past_its_window_still_learns_from_the_oldest_best_trials(goal: str) -> None:
    # 400 trials: the 25 best are the OLDEST (x near 2), the 375 later ones are poor and spread
    # out. TPE's window (the best 25 and the 250 most recent) keeps the old best, so proposals
    # gather near x = 2; a window of recent trials alone would scatter them over [0, 10].
    from fulmen.sweep._controller import Trial
    from fulmen.sweep._engine import WINDOW_BEST, WINDOW_RECENT

    config = parse({"method": "bayes", "metric": {"name": "m", "goal": goal},
                    "parameters": {"x": {"min": 0.0, "max": 10.0}}})  # fmt: skip
    rng = random.Random(1)
    sign = 1.0 if goal == "minimize" else -1.0
    trials = []
    for n in range(400):
        x = 2.0 + rng.uniform(-0.2, 0.2) if n < 25 else rng.uniform(0.0, 10.0)
        value = sign * (rng.uniform(0.0, 1.0) if n < 25 else rng.uniform(5.0, 9.0))
        trials.append(Trial("s", n, f"r{n}", {"x": x}, state="finished", value=value,
                            latent={"x": x}))  # fmt: skip
    assert len(trials) > WINDOW_BEST + WINDOW_RECENT
    xs = [propose(config, trials, set(), seed=s, number=400).params["x"] for s in range(12)]
    assert 1.0 < statistics.median(xs) < 3.0, xs
