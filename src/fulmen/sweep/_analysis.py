"""What a sweep's trials say about its parameters: the best value so far, each parameter's
importance for the metric and its rank correlation with the metric (the sweep page's data).

- **best so far**: over the finished trials with the metric, in trial order, by the goal.
- **importance**: Optuna's importance evaluators on a study of the finished trials (every
  searchable parameter in its Optuna form: ``_space.optuna_space``): fANOVA
  (``FanovaImportanceEvaluator``) when scikit-learn, which it needs, is installed, else
  PED-ANOVA (``PedAnovaImportanceEvaluator``, NumPy only). The answer names the method.
- **correlation**: Spearman's rank correlation of each numeric parameter with the metric (ties
  get their mean rank); None for a parameter whose values are not numbers or do not vary.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from fulmen.sweep._config import SweepConfig
from fulmen.sweep._controller import Trial
from fulmen.sweep._space import optuna_space, to_latent

MIN_TRIALS = 2  # finished trials with the metric before importance and correlation mean anything


def scored(config: SweepConfig, trials: list[Trial]) -> list[Trial]:
    """The finished trials with a finite metric value."""
    return [
        t for t in trials
        if t.state == "finished" and t.value is not None and math.isfinite(t.value)
    ]  # fmt: skip


def best_so_far(config: SweepConfig, trials: list[Trial]) -> dict[str, Any]:
    """``{"best": the best trial or None, "curve": [{"number", "value", "best"}, ...]}``."""
    maximize = config.metric is not None and config.metric.goal == "maximize"
    best: Trial | None = None
    top = math.nan
    curve = []
    for t in scored(config, trials):
        value = float(t.value or 0.0)
        if best is None or (value > top if maximize else value < top):
            best, top = t, value
        curve.append({"number": t.number, "value": value, "best": top})
    chosen = None
    if best is not None:
        chosen = {"number": best.number, "run_id": best.run_id, "value": top,
                  "params": best.params}  # fmt: skip
    return {"best": chosen, "curve": curve}


def importance_method() -> str:
    """``"fanova"`` when scikit-learn is installed (fANOVA needs it), else ``"ped_anova"``."""
    return "fanova" if importlib.util.find_spec("sklearn") is not None else "ped_anova"


def importance(config: SweepConfig, trials: list[Trial]) -> dict[str, Any]:
    """``{"method", "values": {parameter: importance}, "note"}``: Optuna's evaluator on the
    finished trials; ``values`` is empty (and ``note`` says why) when it cannot tell."""
    method = importance_method()
    out: dict[str, Any] = {"method": method, "values": {}, "note": None}
    if config.metric is None:
        out["note"] = "the sweep has no metric"
        return out
    space = optuna_space(config.parameters)
    if not space:
        out["note"] = "the sweep has no searched parameter"
        return out
    from optuna.trial import TrialState, create_trial

    from fulmen.sweep._engine import _optuna

    optuna = _optuna()
    frozen = []
    for t in scored(config, trials):
        params = {}
        for p in config.parameters:
            if p.name not in space:
                continue
            x = t.latent.get(p.name)
            if x is None:
                x = to_latent(p, t.params.get(p.name))
            dist = space[p.name]
            if x is None or not dist._contains(dist.to_internal_repr(x)):
                break
            params[p.name] = x
        else:
            frozen.append(create_trial(state=TrialState.COMPLETE, value=t.value, params=params,
                                       distributions=dict(space)))  # fmt: skip
    if len(frozen) < MIN_TRIALS:
        out["note"] = f"fewer than {MIN_TRIALS} finished trials with the metric"
        return out
    direction = "maximize" if config.metric.goal == "maximize" else "minimize"
    study = optuna.create_study(direction=direction)
    study.add_trials(frozen)
    if method == "fanova":
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    else:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # (an analysis: the page shows why, and the rest of the sweep)
        out["note"] = f"{type(evaluator).__name__}: {exc}"
        return out
    out["values"] = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    return out


def correlation(config: SweepConfig, trials: list[Trial]) -> dict[str, Any]:
    """``{"method": "spearman", "values": {parameter: rho or None}}`` over the finished trials."""
    done = scored(config, trials)
    values: dict[str, float | None] = {}
    for p in config.parameters:
        if p.distribution == "constant":
            continue
        xs: list[Any] = [t.params.get(p.name) for t in done]
        if len(xs) < MIN_TRIALS or not all(_numeric(x) for x in xs):
            values[p.name] = None
            continue
        values[p.name] = spearman([float(x) for x in xs], [float(t.value or 0.0) for t in done])
    return {"method": "spearman", "values": values}


def _numeric(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def ranks(xs: list[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rho (Pearson's r of the ranks); None when either side does not vary."""
    rx, ry = ranks(xs), ranks(ys)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)
