"""``watch``: histograms at the right steps, through a submodule call too, and the topology file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from fulmen import track
from fulmen.track import Api


def train(model: nn.Module, module_called: nn.Module, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(steps):
        opt.zero_grad()
        loss = module_called(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        track.log({"loss": loss.detach(), "i": i})


def test_gradient_and_parameter_histograms_every_log_freq_passes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    run = track.init()
    run.watch(model, log="all", log_freq=2)
    train(model, model, steps=5)
    run.finish()
    rows = Api().run(run.id).history(pandas=False)
    with_hist = [r["i"] for r in rows if "gradients/0.weight" in r]
    assert with_hist == [1, 3]  # after backward passes 2 and 4
    row = rows[1]
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        for prefix in ("gradients", "parameters"):
            hist = row[f"{prefix}/{name}"]
            assert hist["_type"] == "histogram"
            assert len(hist["values"]) == 64
            assert len(hist["bins"]) == 65
    assert sum(row["parameters/0.weight"]["values"]) == 12  # 3 x 4 weights


def test_parameters_are_recorded_when_training_calls_a_submodule() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    run = track.init()
    run.watch(model, log="parameters", log_freq=1)
    train(model, model[0], steps=2)  # the top-level module is never called
    run.finish()
    rows = Api().run(run.id).history(pandas=False)
    assert "parameters/0.weight" in rows[0]
    assert "parameters/1.weight" not in rows[0]  # no backward pass reached it
    assert not any(k.startswith("gradients/") for k in rows[0])


def test_topology_is_recorded_once_as_a_file_and_unwatch_stops() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    run = track.init()
    run.watch(model, log_freq=1)
    topology = json.loads((Path(run.dir) / "model-topology.json").read_text())
    assert topology["type"] == "Sequential"
    assert topology["total_parameters"] == 15 + 8
    assert topology["children"][0]["parameters"][0] == {
        "name": "weight",
        "shape": [3, 4],
        "count": 12,
        "trainable": True,
    }
    run.unwatch(model)
    train(model, model, steps=1)
    run.finish()
    (row,) = Api().run(run.id).history(pandas=False)
    assert not any(k.startswith("gradients/") for k in row)
    assert [f["type"] for f in Api().run(run.id).files].count("topology") == 1


def test_watch_arguments_are_checked() -> None:
    run = track.init()
    with pytest.raises(TypeError, match=r"torch.nn.Module"):
        run.watch(object())
    with pytest.raises(ValueError, match="log_freq"):
        run.watch(nn.Linear(1, 1), log_freq=0)
    with pytest.raises(ValueError, match="log="):
        run.watch(nn.Linear(1, 1), log="weights")
