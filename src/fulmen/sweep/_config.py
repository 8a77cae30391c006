"""The sweep config: W&B's schema, read from YAML or a dict, every field checked.

``parse(config)`` returns a :class:`SweepConfig` or raises :class:`SweepConfigError` naming the
field (``parameters.lr.min``), what was given and what is allowed. docs/sweeps.md has the same
schema as a table. Distributions are :class:`Param` leaves (nested ``parameters`` are flattened to
paths); their sampling and their Optuna mapping live in ``_space.py``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
# distribution -> (required keys, optional keys with W&B's defaults)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "constant": (("value",), {}),
    "categorical": (("values",), {"probabilities": None}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),
    "log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max"), {"q": 1.0}),
    "inv_log_uniform": (("min", "max"), {}),
    "inv_log_uniform_values": (("min", "max"), {}),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": ((), {"a": 1.0, "b": 1.0}),
    "q_beta": ((), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
# min/max are values that must be > 0 (the log is taken of them)
POSITIVE_BOUNDS = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")
PARAM_KEYS = ("distribution", "values", "probabilities", "value", "min", "max", "mu", "sigma",
              "q", "a", "b", "parameters")  # fmt: skip
TOP_KEYS = ("method", "metric", "parameters", "early_terminate", "run_cap", "name",
            "description", "program", "command", "project", "entity", "controller")  # fmt: skip
MACROS = ("${env}", "${interpreter}", "${program}", "${args}", "${args_no_equals}",
          "${args_no_hyphens}", "${args_no_boolean_flags}", "${args_json}", "${args_json_file}",
          "${args_append_hydra}", "${args_override_hydra}")  # fmt: skip
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
_MACRO = re.compile(r"\$\{([^}]*)\}")
_ENVVAR = re.compile(r"^envvar:[A-Za-z_][A-Za-z0-9_]*$")


class SweepConfigError(ValueError):
    """A sweep config that W&B's schema (as fulmen reads it) does not allow; names the field."""


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) parameter: its path in the run config and its distribution."""

    path: tuple[str, ...]
    distribution: str
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] | None = None
    value: Any = None
    min: float = 0.0
    max: float = 0.0
    mu: float = 0.0
    sigma: float = 1.0
    q: float = 1.0
    a: float = 1.0
    b: float = 1.0

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def searchable(self) -> bool:
        """False for a constant (or a single value): nothing to search."""
        if self.distribution == "constant":
            return False
        return not (self.distribution == "categorical" and len(self.values) < 2)


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str = "minimize"
    target: float | None = None

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` for this goal."""
        return a < b if self.goal == "minimize" else a > b

    def reached(self, value: float) -> bool:
        if self.target is None:
            return False
        return value <= self.target if self.goal == "minimize" else value >= self.target


@dataclass(frozen=True)
class Hyperband:
    """``early_terminate: {type: hyperband}`` as resources (iterations = times the metric was
    logged): the smallest bracket ``min_iter``, the largest ``max_iter`` (None: Optuna's "auto")."""

    min_iter: int
    max_iter: int | None
    eta: int = 3
    strict: bool = False


@dataclass(frozen=True)
class SweepConfig:
    method: str
    parameters: tuple[Param, ...]
    metric: Metric | None = None
    early_terminate: Hyperband | None = None
    run_cap: int | None = None
    name: str | None = None
    description: str | None = None
    program: str | None = None
    command: tuple[str, ...] = DEFAULT_COMMAND
    project: str | None = None
    entity: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def load(source: Any) -> dict[str, Any]:
    """The config as a dict: from a dict, or a path to a YAML (or JSON) file."""
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise SweepConfigError(f"sweep config file {os.fspath(source)!r} does not exist")
        import yaml  # type: ignore[import-untyped, unused-ignore]

        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SweepConfigError(f"sweep config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise SweepConfigError(
                f"sweep config file {path} must hold a mapping (method:, parameters:, ...), got "
                f"{type(data).__name__}"
            )
        return dict(data)
    raise SweepConfigError(
        f"sweep must be a dict or the path of a YAML file, got {type(source).__name__} {source!r}"
    )


def parse(source: Any) -> SweepConfig:
    """Check every field of a sweep config (a dict or a YAML file's path)."""
    raw = load(source)
    for key in raw:
        if key not in TOP_KEYS:
            raise SweepConfigError(
                f"sweep config: unknown field {key!r}; allowed: {', '.join(TOP_KEYS)}"
            )
    if "method" not in raw:
        raise SweepConfigError(f"sweep config: 'method' is required ({' | '.join(METHODS)})")
    method = raw["method"]
    if method not in METHODS:
        raise SweepConfigError(
            f"sweep config: method must be one of {', '.join(METHODS)}, got {method!r}"
        )
    metric = _metric(raw.get("metric"))
    parameters = raw.get("parameters", {})
    params = tuple(_params(parameters, ()))
    hyperband = _early_terminate(raw.get("early_terminate"))
    config = SweepConfig(
        method=method,
        parameters=params,
        metric=metric,
        early_terminate=hyperband,
        run_cap=_positive_int("run_cap", raw.get("run_cap")),
        name=_text("name", raw.get("name")),
        description=_text("description", raw.get("description")),
        program=_text("program", raw.get("program")),
        command=_command(raw.get("command")),
        project=_text("project", raw.get("project")),
        entity=_text("entity", raw.get("entity")),
        raw=raw,
    )
    _check_controller(raw.get("controller"))
    _check_method(config)
    return config


def _check_method(config: SweepConfig) -> None:
    if config.method == "bayes":
        if config.metric is None:
            raise SweepConfigError(
                "sweep config: method 'bayes' needs a metric ({name: ..., goal: minimize|maximize})"
            )
        if not any(p.searchable for p in config.parameters):
            raise SweepConfigError(
                "sweep config: method 'bayes' has no parameter to search (every parameter is a "
                "'value' or a single 'values' entry); add a distribution or use method 'grid'"
            )
    if config.method == "grid":
        for p in config.parameters:
            if p.distribution not in ("constant", "categorical", "int_uniform", "q_uniform"):
                raise SweepConfigError(
                    f"sweep config: parameters.{p.name}: method 'grid' needs 'values', 'value', "
                    f"int_uniform or q_uniform; distribution {p.distribution!r} is continuous"
                )
    if config.early_terminate is not None and config.metric is None:
        raise SweepConfigError("sweep config: early_terminate needs a metric to judge runs by")


def _metric(value: Any) -> Metric | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SweepConfigError(
            f"sweep config: metric must be a mapping {{name, goal, target}}, got {value!r}"
        )
    for key in value:
        if key not in ("name", "goal", "target"):
            raise SweepConfigError(
                f"sweep config: metric.{key} is not a field; allowed: name, goal, target"
            )
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise SweepConfigError(
            f"sweep config: metric.name must be a non-empty string, got {name!r}"
        )
    goal = value.get("goal", "minimize")
    if goal not in GOALS:
        raise SweepConfigError(
            f"sweep config: metric.goal must be minimize or maximize, got {goal!r}"
        )
    target = value.get("target")
    if target is not None:
        target = _number("metric.target", target)
    return Metric(name, goal, target)


def _params(spec: Any, prefix: tuple[str, ...]) -> list[Param]:
    where = "parameters" if not prefix else f"parameters.{'.'.join(prefix)}.parameters"
    if not isinstance(spec, Mapping):
        raise SweepConfigError(
            f"sweep config: {where} must be a mapping of name -> spec, got {spec!r}"
        )
    out: list[Param] = []
    for name, body in spec.items():
        if not isinstance(name, str) or not name or "." in name:
            raise SweepConfigError(
                f"sweep config: {where}: parameter names are non-empty strings without '.', "
                f"got {name!r}"
            )
        path = (*prefix, name)
        here = "parameters." + ".".join(path)
        if not isinstance(body, Mapping):
            raise SweepConfigError(
                f"sweep config: {here} must be a mapping (values:, value:, min:/max:, "
                f"distribution:, parameters:), got {body!r}"
            )
        for key in body:
            if key not in PARAM_KEYS:
                raise SweepConfigError(
                    f"sweep config: {here}.{key} is not a field; allowed: {', '.join(PARAM_KEYS)}"
                )
        if "parameters" in body:
            others = sorted(set(body) - {"parameters"})
            if others:
                raise SweepConfigError(
                    f"sweep config: {here} has nested parameters and also {', '.join(others)}; "
                    "a parameter is either nested or a distribution"
                )
            out += _params(body["parameters"], path)
            continue
        out.append(_param(path, here, body))
    return out


def infer_distribution(body: Mapping[str, Any]) -> str | None:
    """W&B's inference when ``distribution`` is absent: values -> categorical, value -> constant,
    int min and max -> int_uniform, a float min or max -> uniform, mu/sigma -> normal."""
    if "values" in body:
        return "categorical"
    if "value" in body:
        return "constant"
    if "min" in body and "max" in body:
        ints = all(
            isinstance(body[k], int) and not isinstance(body[k], bool) for k in ("min", "max")
        )
        return "int_uniform" if ints else "uniform"
    if "mu" in body or "sigma" in body:
        return "normal"
    return None


def _param(path: tuple[str, ...], here: str, body: Mapping[str, Any]) -> Param:  # noqa: PLR0912
    distribution = body.get("distribution")
    if distribution is None:
        distribution = infer_distribution(body)
        if distribution is None:
            raise SweepConfigError(
                f"sweep config: {here} needs values, value, min and max, or a distribution"
            )
    if distribution not in DISTRIBUTIONS:  # constant and categorical may be named too, as W&B
        raise SweepConfigError(
            f"sweep config: {here}.distribution must be one of {', '.join(DISTRIBUTIONS)}, "
            f"got {distribution!r}"
        )
    required, optional = DISTRIBUTIONS[distribution]
    allowed_keys = {"distribution", *required, *optional}
    for key in body:
        if key not in allowed_keys:
            takes = ", ".join((*required, *optional)) or "nothing"
            raise SweepConfigError(
                f"sweep config: {here}.{key} is not used by distribution {distribution!r} "
                f"(it takes {takes})"
            )
    for key in required:
        if key not in body:
            raise SweepConfigError(
                f"sweep config: {here}.{key} is required by distribution {distribution!r}"
            )
    if distribution == "constant":
        return Param(path, distribution, value=body["value"])
    if distribution == "categorical":
        return _categorical(path, here, body)
    numbers: dict[str, float] = {}
    for key in (*required, *optional):
        value = body.get(key, optional.get(key))
        numbers[key] = _number(f"{here}.{key}", value)
    if distribution == "int_uniform":
        for key in ("min", "max"):
            if not isinstance(body[key], int) or isinstance(body[key], bool):
                raise SweepConfigError(
                    f"sweep config: {here}.{key} must be an integer for int_uniform, "
                    f"got {body[key]!r}"
                )
        numbers = {"min": int(body["min"]), "max": int(body["max"])}
    if "min" in numbers and not numbers["min"] < numbers["max"]:
        raise SweepConfigError(
            f"sweep config: {here}: min must be less than max, got min={numbers['min']!r} "
            f"max={numbers['max']!r}"
        )
    if distribution in POSITIVE_BOUNDS and numbers["min"] <= 0:
        raise SweepConfigError(
            f"sweep config: {here}.min must be > 0 for {distribution} (min and max are values "
            f"whose log is taken), got {numbers['min']!r}"
        )
    for key in ("sigma", "q", "a", "b"):
        if key in numbers and numbers[key] <= 0:
            raise SweepConfigError(f"sweep config: {here}.{key} must be > 0, got {numbers[key]!r}")
    if "q" in numbers and _is_int(body.get("q", 1)):
        numbers["q"] = int(body.get("q", 1))  # an integer q gives integer values
    return Param(path, distribution, **numbers)  # type: ignore[arg-type]


def _categorical(path: tuple[str, ...], here: str, body: Mapping[str, Any]) -> Param:
    values = body["values"]
    if not isinstance(values, (list, tuple)) or not values:
        raise SweepConfigError(
            f"sweep config: {here}.values must be a non-empty list, got {values!r}"
        )
    probabilities = body.get("probabilities")
    probs: tuple[float, ...] | None = None
    if probabilities is not None:
        if not isinstance(probabilities, (list, tuple)) or len(probabilities) != len(values):
            raise SweepConfigError(
                f"sweep config: {here}.probabilities must be a list of {len(values)} numbers (one "
                f"per value), got {probabilities!r}"
            )
        probs = tuple(_number(f"{here}.probabilities", p) for p in probabilities)
        if any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise SweepConfigError(
                f"sweep config: {here}.probabilities must be >= 0 and sum to 1, "
                f"got {probabilities!r}"
            )
    return Param(path, "categorical", values=tuple(values), probabilities=probs)


def _early_terminate(value: Any) -> Hyperband | None:
    if value is None:
        return None
    where = "sweep config: early_terminate"
    if not isinstance(value, Mapping):
        raise SweepConfigError(f"{where} must be a mapping {{type: hyperband, ...}}, got {value!r}")
    for key in value:
        if key not in ("type", "min_iter", "max_iter", "s", "eta", "strict"):
            raise SweepConfigError(
                f"{where}.{key} is not a field; allowed: type, min_iter, max_iter, s, eta, strict"
            )
    if value.get("type") != "hyperband":
        raise SweepConfigError(f"{where}.type must be 'hyperband', got {value.get('type')!r}")
    eta = value.get("eta", 3)
    if not _is_int(eta) or eta < 2:
        raise SweepConfigError(f"{where}.eta must be an integer >= 2, got {eta!r}")
    strict = value.get("strict", False)
    if not isinstance(strict, bool):
        raise SweepConfigError(f"{where}.strict must be true or false, got {strict!r}")
    min_iter = _positive_int("early_terminate.min_iter", value.get("min_iter"))
    max_iter = _positive_int("early_terminate.max_iter", value.get("max_iter"))
    s = _positive_int("early_terminate.s", value.get("s"))
    if min_iter is not None:
        if s is not None:
            raise SweepConfigError(f"{where}: give min_iter, or max_iter and s, not both")
        if max_iter is not None and max_iter <= min_iter:
            raise SweepConfigError(f"{where}: max_iter must be greater than min_iter")
        return Hyperband(min_iter, max_iter, int(eta), strict)
    if max_iter is None or s is None:
        raise SweepConfigError(f"{where} needs min_iter, or max_iter and s")
    smallest = max_iter // int(eta) ** s
    if smallest < 1:
        raise SweepConfigError(
            f"{where}: max_iter / eta**s must be >= 1 (the first bracket), got "
            f"{max_iter} / {eta}**{s}"
        )
    return Hyperband(smallest, max_iter, int(eta), strict)


def _command(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_COMMAND
    if not isinstance(value, (list, tuple)) or not value:
        raise SweepConfigError(
            f"sweep config: command must be a non-empty list of strings, got {value!r}"
        )
    for item in value:
        if not isinstance(item, str):
            raise SweepConfigError(f"sweep config: command items must be strings, got {item!r}")
        for macro in _MACRO.findall(item):
            if "${" + macro + "}" not in MACROS and not _ENVVAR.match(macro):
                raise SweepConfigError(
                    f"sweep config: command has an unknown macro ${{{macro}}}; allowed: "
                    f"{', '.join(MACROS)}, ${{envvar:NAME}}"
                )
    return tuple(value)


def _check_controller(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or value.get("type", "local") not in ("local", "cloud"):
        raise SweepConfigError(
            f"sweep config: controller must be {{type: local}} (or cloud), got {value!r}"
        )


def _number(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SweepConfigError(f"sweep config: {what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise SweepConfigError(f"sweep config: {what} must be finite, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(what: str, value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise SweepConfigError(f"sweep config: {what} must be an integer >= 1, got {value!r}")
    return int(value)


def _text(what: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SweepConfigError(f"sweep config: {what} must be a non-empty string, got {value!r}")
    return value
