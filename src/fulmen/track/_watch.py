"""``Run.watch``: gradient and parameter histograms from hooks on the parameters themselves.

Hooks sit on each parameter (``register_post_accumulate_grad_hook``), not on the top-level module's
forward: W&B hooks the module, so parameter histograms go missing when the training code calls a
submodule directly. Here every backward pass that reaches a parameter counts, whichever module the
code called. torch is imported only inside this module's functions.
"""

from __future__ import annotations

import json
from typing import Any

from fulmen.track._values import histogram_of_tensor

LOG_CHOICES = ("gradients", "parameters", "all", None)


class Watcher:
    """The hooks of one watched model; ``remove()`` takes them off."""

    def __init__(self, run: Any, model: Any, *, log: str | None, log_freq: int) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"watch() takes a torch.nn.Module, got {type(model).__name__}")
        if log not in LOG_CHOICES:
            raise ValueError(f"watch(log=...) must be one of {LOG_CHOICES}, got {log!r}")
        if isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1:
            raise ValueError(f"watch(log_freq=...) must be an int >= 1, got {log_freq!r}")
        self.run, self.model, self.log_freq = run, model, log_freq
        self.gradients = log in ("gradients", "all")
        self.parameters = log in ("parameters", "all")
        self.counts: dict[str, int] = {}
        self.handles: list[Any] = []
        if self.gradients or self.parameters:
            for name, param in model.named_parameters():
                if param.requires_grad:
                    hook = self._hook(name)
                    self.handles.append(param.register_post_accumulate_grad_hook(hook))  # type: ignore[no-untyped-call]
        self._record_topology(model)

    def _hook(self, name: str) -> Any:
        def hook(param: Any) -> None:
            count = self.counts[name] = self.counts.get(name, 0) + 1
            if count % self.log_freq:
                return
            if self.gradients and param.grad is not None:
                self.run._add_extra(f"gradients/{name}", histogram_of_tensor(param.grad))
            if self.parameters:
                self.run._add_extra(f"parameters/{name}", histogram_of_tensor(param.data))

        return hook

    def _record_topology(self, model: Any) -> None:
        files = self.run._files
        index = len(list(files.glob("model-topology*.json")))
        name = "model-topology.json" if index == 0 else f"model-topology-{index}.json"
        (files / name).write_text(json.dumps(topology(model), indent=1))
        self.run.save_file(name, kind="topology")

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def topology(module: Any, name: str = "") -> dict[str, Any]:
    """The module tree: name, type, own parameters (shape, count), children, total count."""
    params = [
        {"name": n, "shape": list(p.shape), "count": int(p.numel()), "trainable": p.requires_grad}
        for n, p in module.named_parameters(recurse=False)
    ]
    children = [topology(child, n) for n, child in module.named_children()]
    total = sum(p["count"] for p in params) + sum(c["total_parameters"] for c in children)
    return {
        "name": name,
        "type": type(module).__name__,
        "parameters": params,
        "children": children,
        "total_parameters": total,
    }
