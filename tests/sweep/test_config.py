"""The sweep config: W&B's schema, every field checked with an error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fulmen.sweep import SweepConfigError, parse
from fulmen.sweep._config import DISTRIBUTIONS, MACROS


def _one(spec: dict[str, Any], method: str = "random") -> Any:
    return parse({"method": method, "parameters": {"p": spec}}).parameters[0]


EVERY_DISTRIBUTION = {
    "int_uniform": {"min": 1, "max": 5},
    "uniform": {"min": 0.0, "max": 1.0},
    "q_uniform": {"min": 0, "max": 10, "q": 2},
    "log_uniform": {"min": -5, "max": 0},
    "log_uniform_values": {"min": 1e-5, "max": 1e-1},
    "q_log_uniform": {"min": 0, "max": 5, "q": 1},
    "q_log_uniform_values": {"min": 1, "max": 256, "q": 8},
    "inv_log_uniform": {"min": 0, "max": 3},
    "inv_log_uniform_values": {"min": 1, "max": 100},
    "normal": {"mu": 1.0, "sigma": 2.0},
    "q_normal": {"mu": 0.0, "sigma": 5.0, "q": 1},
    "log_normal": {"mu": 0.0, "sigma": 1.0},
    "q_log_normal": {"mu": 1.0, "sigma": 1.0, "q": 0.5},
    "beta": {"a": 2.0, "b": 5.0},
    "q_beta": {"a": 2.0, "b": 2.0, "q": 0.1},
}


@pytest.mark.parametrize("name", sorted(EVERY_DISTRIBUTION))
def test_every_distribution_parses_with_its_fields(name: str) -> None:
    spec = {"distribution": name, **EVERY_DISTRIBUTION[name]}
    p = _one(spec)
    assert p.distribution == name
    for key, value in EVERY_DISTRIBUTION[name].items():
        assert getattr(p, key) == value


def test_the_list_covers_every_distribution_of_the_schema() -> None:
    assert set(EVERY_DISTRIBUTION) | {"constant", "categorical"} == set(DISTRIBUTIONS)


@pytest.mark.parametrize(
    ("spec", "inferred"),
    [
        ({"values": [1, 2]}, "categorical"),
        ({"value": 3}, "constant"),
        ({"min": 1, "max": 4}, "int_uniform"),
        ({"min": 1, "max": 4.0}, "uniform"),
        ({"min": 0.1, "max": 0.5}, "uniform"),
        ({"mu": 0.0, "sigma": 1.0}, "normal"),
    ],
)
def test_the_distribution_is_inferred_as_wandb_does(spec: dict[str, Any], inferred: str) -> None:
    assert _one(spec).distribution == inferred


def test_defaults_are_wandbs() -> None:
    normal = _one({"distribution": "normal"})
    assert (normal.mu, normal.sigma) == (0.0, 1.0)
    beta = _one({"distribution": "beta"})
    assert (beta.a, beta.b) == (1.0, 1.0)
    assert _one({"distribution": "q_uniform", "min": 0, "max": 3}).q == 1
    early = {"type": "hyperband", "min_iter": 3}
    hb = parse({"method": "random", "metric": {"name": "m"}, "early_terminate": early})
    hb = hb.early_terminate
    assert hb is not None
    assert (hb.min_iter, hb.max_iter, hb.eta, hb.strict) == (3, None, 3, False)


def test_nested_parameters_become_paths() -> None:
    config = parse({
        "method": "grid",
        "parameters": {"opt": {"parameters": {"lr": {"values": [0.1]}, "m": {"value": 0.9}}}},
    })  # fmt: skip
    assert [p.name for p in config.parameters] == ["opt.lr", "opt.m"]


def test_hyperband_with_max_iter_and_s() -> None:
    hb = parse({"method": "random", "metric": {"name": "m"},
                "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3,
                                    "strict": True}}).early_terminate  # fmt: skip
    assert hb is not None
    assert (hb.min_iter, hb.max_iter, hb.eta, hb.strict) == (3, 27, 3, True)


def test_a_yaml_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "method: bayes\nmetric:\n  name: val/loss\n  goal: minimize\n  target: 0.1\n"
        "run_cap: 5\nprogram: train.py\nparameters:\n  lr:\n    distribution: log_uniform_values\n"
        "    min: 0.0001\n    max: 0.1\n  batch:\n    values: [16, 32]\n"
        "    probabilities: [0.25, 0.75]\n"
    )
    config = parse(str(path))
    assert config.method == "bayes"
    assert config.metric is not None
    assert (config.metric.name, config.metric.goal, config.metric.target) == (
        "val/loss",
        "minimize",
        0.1,
    )
    assert config.run_cap == 5
    assert config.program == "train.py"
    assert config.parameters[1].probabilities == (0.25, 0.75)


def test_every_macro_is_accepted() -> None:
    command = [*MACROS, "${envvar:HOME}", "--x=${args_json_file}"]
    assert parse({"method": "grid", "command": command}).command == tuple(command)


BAD = [
    ({}, "'method' is required"),
    ({"method": "hill"}, "method must be one of grid, random, bayes, got 'hill'"),
    ({"method": "grid", "colour": 1}, "unknown field 'colour'"),
    ({"method": "grid", "metric": {"goal": "minimize"}}, "metric.name"),
    ({"method": "grid", "metric": {"name": "m", "goal": "up"}}, "metric.goal"),
    ({"method": "grid", "metric": {"name": "m", "target": "x"}}, "metric.target"),
    ({"method": "grid", "metric": {"name": "m", "when": 1}}, "metric.when"),
    ({"method": "grid", "run_cap": 0}, "run_cap"),
    ({"method": "grid", "name": 3}, "name"),
    ({"method": "grid", "program": ""}, "program"),
    ({"method": "grid", "command": "python x.py"}, "command must be a non-empty list"),
    ({"method": "grid", "command": ["${python}"]}, "unknown macro ${python}"),
    ({"method": "grid", "command": [1]}, "command items must be strings"),
    ({"method": "random", "parameters": {"lr": {"min": 1, "max": 0}}}, "parameters.lr: min"),
    (
        {"method": "random", "parameters": {"lr": {"distribution": "cauchy", "min": 0, "max": 1}}},
        "parameters.lr.distribution must be one of",
    ),
    (
        {"method": "random", "parameters": {"lr": {"distribution": "uniform", "max": 1.0}}},
        "parameters.lr.min is required",
    ),
    (
        {
            "method": "random",
            "parameters": {"lr": {"distribution": "uniform", "min": 0.0, "max": 1.0, "mu": 1}},
        },
        "parameters.lr.mu is not used by distribution 'uniform'",
    ),
    (
        {
            "method": "random",
            "parameters": {"lr": {"distribution": "log_uniform_values", "min": 0.0, "max": 1.0}},
        },
        "parameters.lr.min",
    ),
    (
        {"method": "random", "parameters": {"lr": {"distribution": "normal", "sigma": 0}}},
        "parameters.lr.sigma must be > 0",
    ),
    (
        {
            "method": "random",
            "parameters": {"lr": {"distribution": "q_uniform", "min": 0, "max": 1, "q": -1}},
        },
        "parameters.lr.q",
    ),
    (
        {"method": "random", "parameters": {"lr": {"distribution": "beta", "a": 0}}},
        "parameters.lr.a",
    ),
    (
        {
            "method": "random",
            "parameters": {"lr": {"distribution": "int_uniform", "min": 0.5, "max": 3}},
        },
        "parameters.lr.min must be an int",
    ),
    ({"method": "random", "parameters": {"lr": {"values": []}}}, "parameters.lr.values"),
    (
        {"method": "random", "parameters": {"lr": {"values": [1, 2], "probabilities": [1.0]}}},
        "parameters.lr.probabilities",
    ),
    (
        {"method": "random", "parameters": {"lr": {"values": [1, 2], "probabilities": [0.5, 0.6]}}},
        "sum to 1",
    ),
    ({"method": "random", "parameters": {"lr": {"colour": 1}}}, "parameters.lr.colour"),
    ({"method": "random", "parameters": {"lr": {}}}, "parameters.lr needs values"),
    ({"method": "random", "parameters": {"lr": 0.1}}, "parameters.lr must be a mapping"),
    (
        {"method": "random", "parameters": {"o": {"parameters": {"x": {"min": "a", "max": 1}}}}},
        "parameters.o.x.min",
    ),
    (
        {"method": "random", "parameters": {"o": {"parameters": {}, "value": 1}}},
        "parameters.o has nested parameters",
    ),
    (
        {"method": "grid", "parameters": {"lr": {"min": 0.0, "max": 1.0}}},
        "parameters.lr: method 'grid' needs",
    ),
    (
        {"method": "bayes", "parameters": {"lr": {"min": 0.0, "max": 1.0}}},
        "method 'bayes' needs a metric",
    ),
    (
        {"method": "bayes", "metric": {"name": "m"}, "parameters": {"lr": {"value": 1}}},
        "method 'bayes' has no parameter to search",
    ),
    (
        {"method": "random", "early_terminate": {"type": "hyperband", "min_iter": 1}},
        "early_terminate needs a metric",
    ),
    (
        {"method": "random", "metric": {"name": "m"}, "early_terminate": {"type": "median"}},
        "early_terminate.type must be 'hyperband'",
    ),
    (
        {
            "method": "random",
            "metric": {"name": "m"},
            "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 1},
        },
        "early_terminate.eta",
    ),
    (
        {
            "method": "random",
            "metric": {"name": "m"},
            "early_terminate": {"type": "hyperband", "min_iter": 1, "strict": "yes"},
        },
        "early_terminate.strict",
    ),
    (
        {
            "method": "random",
            "metric": {"name": "m"},
            "early_terminate": {"type": "hyperband", "max_iter": 9},
        },
        "needs min_iter, or max_iter and s",
    ),
    (
        {
            "method": "random",
            "metric": {"name": "m"},
            "early_terminate": {"type": "hyperband", "min_iter": 0},
        },
        "early_terminate.min_iter",
    ),
    (
        {
            "method": "random",
            "metric": {"name": "m"},
            "early_terminate": {"type": "hyperband", "max_iter": 3, "s": 2},
        },
        "max_iter / eta**s",
    ),
    ({"method": "random", "controller": {"type": "moon"}}, "controller"),
]


@pytest.mark.parametrize(("config", "message"), BAD)
def test_a_bad_config_names_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SweepConfigError) as caught:
        parse(config)
    assert message in str(caught.value)


def test_a_missing_file_and_a_non_mapping_are_named(tmp_path: Path) -> None:
    with pytest.raises(SweepConfigError, match="does not exist"):
        parse(str(tmp_path / "nope.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SweepConfigError, match="must hold a mapping"):
        parse(str(tmp_path / "list.yaml"))
    with pytest.raises(SweepConfigError, match="must be a dict or the path"):
        parse(3)
