"""The evaluation loops: the sanity check, validation (in fit and alone), test and predict.

Written as plain functions of the Trainer, in the order documented in ``fulmen.train.trainer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from fulmen.train._data import as_loader_list, limit_batches, source
from fulmen.train._hooks import is_overridden, takes_batch_idx
from fulmen.train.module import LightningModule

if TYPE_CHECKING:
    from fulmen.train.trainer import Trainer

_STAGE_HOOKS = {
    "validate": ("validation", "validation_step"),
    "test": ("test", "test_step"),
}


def sanity_check(trainer: Trainer) -> None:
    steps = trainer.num_sanity_val_steps
    if steps == 0 or sum(trainer.num_val_batches) == 0:
        return
    trainer.num_sanity_val_batches = [
        n if steps == -1 else min(n, float(steps)) for n in trainer.num_val_batches
    ]
    trainer.sanity_checking = True
    trainer._hooks.call("on_sanity_check_start")
    evaluate(
        trainer, "validate", trainer.val_dataloaders, trainer.num_sanity_val_batches, in_fit=True
    )
    trainer._hooks.call("on_sanity_check_end")
    trainer.sanity_checking = False
    trainer._eval_results.reset()
    trainer._logged_metrics.clear()


def validate_in_fit(trainer: Trainer) -> None:
    trainer.stage = "validate"
    evaluate(trainer, "validate", trainer.val_dataloaders, trainer.num_val_batches, in_fit=True)
    trainer.stage = "train"


def evaluate_standalone(
    trainer: Trainer, stage: str, module: LightningModule, given: Any, verbose: bool
) -> list[dict[str, float]]:
    step_name = _STAGE_HOOKS[stage][1]
    if not is_overridden(step_name, module, LightningModule):
        raise NotImplementedError(
            f"{stage}(): {type(module).__qualname__} has no {step_name}; define "
            f"{step_name}(self, batch, batch_idx)"
        )
    name = "val_dataloader" if stage == "validate" else "test_dataloader"
    loaders = as_loader_list(given if given is not None else source(trainer, name))
    if not loaders:
        raise ValueError(
            f"{stage}() needs data: pass dataloaders, a datamodule, or define {name}()"
        )
    loaders = [trainer.strategy.process_dataloader(dl, stage) for dl in loaders]
    limit = trainer.limit_val_batches if stage == "validate" else trainer.limit_test_batches
    counts = [limit_batches(dl, limit, f"limit_{stage[:4]}_batches") for dl in loaders]
    if stage == "validate":
        trainer.val_dataloaders, trainer.num_val_batches = loaders, counts
    else:
        trainer.test_dataloaders, trainer.num_test_batches = loaders, counts
    results = evaluate(trainer, stage, loaders, counts, in_fit=False)
    if verbose and trainer.is_global_zero:
        print_results(stage, results)
    return results


def evaluate(
    trainer: Trainer, stage: str, loaders: list[Any], counts: list[float], in_fit: bool
) -> list[dict[str, float]]:
    """The validation/test loop; returns one dict of epoch metrics per dataloader."""
    module = trainer.lightning_module
    assert module is not None
    prefix, step_name = _STAGE_HOOKS[stage]
    step_fn = getattr(module, step_name)
    outer_results, trainer._results = trainer._results, trainer._eval_results
    trainer._eval_results.reset()
    was_training = module.training
    getattr(module, f"on_{prefix if prefix == 'test' else 'validation'}_model_eval")()
    grad_off = torch.inference_mode() if trainer.inference_mode and not in_fit else torch.no_grad()
    multiple = len(loaders) > 1
    with_idx = takes_batch_idx(step_fn)  # validation_step(self, batch) works, as in Lightning
    hooks = trainer._hooks
    try:
        with grad_off:
            hooks.call(f"on_{prefix}_start")
            hooks.call(f"on_{prefix}_epoch_start")
            for dl_idx, loader in enumerate(loaders):
                trainer._dataloader_idx = dl_idx if multiple else None
                extra = (dl_idx,) if multiple else ()
                for batch_idx, raw in enumerate(loader):
                    if batch_idx >= counts[dl_idx]:
                        break
                    batch = trainer._to_device(raw, dl_idx)
                    trainer._batch, trainer._batch_size = batch, None
                    hooks.batch_start(prefix, batch, batch_idx, dl_idx, multiple)
                    trainer._fx = step_name
                    with trainer.precision_plugin.forward_context():
                        output = step_fn(batch, *((batch_idx,) if with_idx else ()), *extra)
                    hooks.batch_end(prefix, output, batch, batch_idx, dl_idx, multiple)
            trainer._dataloader_idx = None
            hooks.call(f"on_{prefix}_epoch_end")
            metrics = trainer._eval_results.epoch_metrics()
            if not trainer.sanity_checking:
                trainer._emit(dict(metrics))
            trainer._eval_results.end_epoch()
            hooks.call(f"on_{prefix}_end")
    finally:
        trainer._results = outer_results
        if was_training:
            getattr(module, f"on_{prefix}_model_train")()
    return per_dataloader(metrics, len(loaders))


def per_dataloader(metrics: dict[str, float], n: int) -> list[dict[str, float]]:
    if n <= 1:
        return [dict(metrics)]
    out: list[dict[str, float]] = [{} for _ in range(n)]
    for key, value in metrics.items():
        for i in range(n):
            if "/dataloader_idx_" not in key or key.endswith(f"/dataloader_idx_{i}"):
                out[i][key] = value
    return out


def predict(
    trainer: Trainer, module: LightningModule, given: Any, keep: bool, gather: bool = False
) -> Any:
    loaders = as_loader_list(given if given is not None else source(trainer, "predict_dataloader"))
    if not loaders:
        raise ValueError(
            "predict() needs data: pass dataloaders, a datamodule, or define predict_dataloader()"
        )
    loaders = [trainer.strategy.process_dataloader(dl, "predict") for dl in loaders]
    trainer.predict_dataloaders = loaders
    trainer.num_predict_batches = [
        limit_batches(dl, trainer.limit_predict_batches, "limit_predict_batches") for dl in loaders
    ]
    multiple = len(loaders) > 1
    predict_step = module.predict_step
    with_idx = takes_batch_idx(predict_step)
    hooks = trainer._hooks
    predictions: list[list[Any]] = [[] for _ in loaders]
    module.on_predict_model_eval()
    grad_off = torch.inference_mode() if trainer.inference_mode else torch.no_grad()
    with grad_off:
        hooks.call("on_predict_start")
        hooks.call("on_predict_epoch_start")
        for dl_idx, loader in enumerate(loaders):
            extra = (dl_idx,) if multiple else ()
            for batch_idx, raw in enumerate(loader):
                if batch_idx >= trainer.num_predict_batches[dl_idx]:
                    break
                batch = trainer._to_device(raw, dl_idx)
                hooks.batch_start("predict", batch, batch_idx, dl_idx, multiple)
                trainer._fx = "predict_step"
                with trainer.precision_plugin.forward_context():
                    output = predict_step(batch, *((batch_idx,) if with_idx else ()), *extra)
                hooks.batch_end("predict", output, batch, batch_idx, dl_idx, multiple)
                if keep:
                    predictions[dl_idx].append(output)
        hooks.call("on_predict_epoch_end")
        hooks.call("on_predict_end")
    if not keep:
        return None
    if gather and trainer.world_size > 1:
        from fulmen.train._data_parallel import gather_predictions

        predictions = [gather_predictions(trainer.strategy, p) for p in predictions]
    return predictions if multiple else predictions[0]


def print_results(stage: str, results: Iterable[dict[str, float]]) -> None:
    for i, metrics in enumerate(results):
        if not metrics:
            continue
        title = f"{stage.capitalize()} metric" + (f" (dataloader {i})" if i else "")
        width = max(len(title), *(len(k) for k in metrics))
        print("-" * (width + 24))
        print(f"{title:<{width}}    DataLoader {i}")
        print("-" * (width + 24))
        for key, value in sorted(metrics.items()):
            print(f"{key:<{width}}    {value:.6g}")
        print("-" * (width + 24))
