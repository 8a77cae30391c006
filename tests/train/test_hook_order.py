"""The hooks fire in the order of the loop's pseudocode (fulmen.train.trainer's docstring)."""

from __future__ import annotations

from typing import Any

import torch

import fulmen as pl
from fulmen.train.callback import HOOKS
from tests.train.helpers import Regressor, loader, quiet_trainer

MODULE_HOOKS = (
    "prepare_data",
    "configure_callbacks",
    "setup",
    "configure_model",
    "configure_optimizers",
    "on_fit_start",
    "on_train_start",
    "on_train_epoch_start",
    "on_before_batch_transfer",
    "transfer_batch_to_device",
    "on_after_batch_transfer",
    "on_train_batch_start",
    "optimizer_step",
    "training_step",
    "on_before_zero_grad",
    "optimizer_zero_grad",
    "on_before_backward",
    "backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "configure_gradient_clipping",
    "lr_scheduler_step",
    "on_train_batch_end",
    "on_train_epoch_end",
    "on_train_end",
    "on_validation_model_eval",
    "on_validation_model_train",
    "on_validation_start",
    "on_validation_epoch_start",
    "on_validation_batch_start",
    "validation_step",
    "on_validation_batch_end",
    "on_validation_epoch_end",
    "on_validation_end",
    "on_test_model_eval",
    "on_test_model_train",
    "on_test_start",
    "on_test_epoch_start",
    "on_test_batch_start",
    "test_step",
    "on_test_batch_end",
    "on_test_epoch_end",
    "on_test_end",
    "on_predict_model_eval",
    "on_predict_start",
    "on_predict_epoch_start",
    "on_predict_batch_start",
    "predict_step",
    "on_predict_batch_end",
    "on_predict_epoch_end",
    "on_predict_end",
    "on_fit_end",
    "teardown",
)


def recording(cls: type, prefix: str, names: tuple[str, ...]) -> type:
    def wrap(name: str) -> Any:
        original = getattr(cls, name)

        def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(f"{prefix}.{name}")
            return original(self, *args, **kwargs)

        return hook

    return type(f"Recording{cls.__name__}", (cls,), {n: wrap(n) for n in names})


class _Model(Regressor):
    def __init__(self) -> None:
        super().__init__(scheduler=True)
        self.calls: list[str] = []


class _Callback(pl.Callback):
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls


RecordingModel = recording(_Model, "M", MODULE_HOOKS)
RecordingCallback = recording(
    _Callback, "C", tuple(h for h in HOOKS if h not in ("on_save_checkpoint", "on_load_checkpoint"))
)


def both(hook: str) -> list[str]:
    return [f"C.{hook}", f"M.{hook}"]


def batch_transfer() -> list[str]:
    return ["M.on_before_batch_transfer", "M.transfer_batch_to_device", "M.on_after_batch_transfer"]


def eval_loop(prefix: str, batches: int) -> list[str]:
    step = "validation" if prefix == "validation" else prefix
    calls = [
        f"M.on_{prefix}_model_eval",
        *both(f"on_{step}_start"),
        *both(f"on_{step}_epoch_start"),
    ]
    for _ in range(batches):
        calls += batch_transfer()
        calls += [*both(f"on_{step}_batch_start"), f"M.{step}_step", *both(f"on_{step}_batch_end")]
    calls += [*both(f"on_{step}_epoch_end"), *both(f"on_{step}_end")]
    return calls


def train_batch(window_start: bool, steps: bool) -> list[str]:
    calls = [*batch_transfer(), *both("on_train_batch_start")]
    closure = ["M.training_step"]
    if window_start:
        closure += [*both("on_before_zero_grad"), "M.optimizer_zero_grad"]
    closure += [*both("on_before_backward"), "M.backward", *both("on_after_backward")]
    if steps:
        calls += ["M.optimizer_step", *closure]
        calls += [*both("on_before_optimizer_step"), "M.configure_gradient_clipping"]
    else:
        calls += closure
    return [*calls, *both("on_train_batch_end")]


def expected_fit(batches: int, accumulate: int, val_batches: int, sanity: int) -> list[str]:
    calls = ["M.configure_callbacks", "M.prepare_data", *both("setup"), "M.configure_model"]
    calls += ["M.configure_optimizers", *both("on_fit_start")]
    calls += ["C.on_sanity_check_start", *eval_loop("validation", sanity)]
    calls += ["M.on_validation_model_train", "C.on_sanity_check_end"]
    calls += [*both("on_train_start"), *both("on_train_epoch_start")]
    for i in range(batches):
        steps = (i + 1) % accumulate == 0 or i + 1 == batches
        calls += train_batch(window_start=i % accumulate == 0, steps=steps)
    calls += [*eval_loop("validation", val_batches), "M.on_validation_model_train"]
    calls += ["M.lr_scheduler_step"]
    calls += ["M.on_train_epoch_end", "C.on_train_epoch_end"]  # the module first, on purpose
    calls += [*both("on_train_end"), *both("on_fit_end"), *both("teardown")]
    return calls


def test_fit_hooks_fire_in_the_documented_order() -> None:
    model = RecordingModel()
    trainer = quiet_trainer(
        callbacks=[RecordingCallback(model.calls)],
        limit_train_batches=3,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        accumulate_grad_batches=2,
    )
    trainer.fit(model, loader(), loader())
    assert model.calls == expected_fit(batches=3, accumulate=2, val_batches=2, sanity=1)


def test_validate_test_predict_hooks_fire_in_the_documented_order() -> None:
    model = RecordingModel()
    trainer = quiet_trainer(callbacks=[RecordingCallback(model.calls)], limit_test_batches=2)
    start = ["M.configure_callbacks", "M.prepare_data"]

    trainer.validate(model, loader(n=16), verbose=False)
    expected = [*start, *both("setup"), "M.configure_model", *eval_loop("validation", 2)]
    assert model.calls == [*expected, "M.on_validation_model_train", *both("teardown")]

    model.calls.clear()
    trainer.test(model, loader(), verbose=False)
    expected = [*start, *both("setup"), "M.configure_model", *eval_loop("test", 2)]
    assert model.calls == [*expected, "M.on_test_model_train", *both("teardown")]

    model.calls.clear()
    trainer.predict(model, loader(n=8))
    predict = [
        "M.on_predict_model_eval",
        *both("on_predict_start"),
        *both("on_predict_epoch_start"),
    ]
    predict += [*batch_transfer(), *both("on_predict_batch_start"), "M.predict_step"]
    predict += [
        *both("on_predict_batch_end"),
        *both("on_predict_epoch_end"),
        *both("on_predict_end"),
    ]
    assert model.calls == [*start, *both("setup"), "M.configure_model", *predict, *both("teardown")]


def test_manual_optimization_calls_the_backward_hooks_from_manual_backward() -> None:
    class Manual(RecordingModel):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> None:
            self.calls.append("M.training_step")
            opt = self.optimizers()
            opt.zero_grad()
            x, y = batch
            self.manual_backward(torch.nn.functional.mse_loss(self(x), y))
            opt.step()

    model = Manual()
    trainer = quiet_trainer(callbacks=[RecordingCallback(model.calls)], limit_train_batches=1)
    trainer.fit(model, loader())
    start = model.calls.index("C.on_train_batch_start")
    end = model.calls.index("C.on_train_batch_end")
    assert model.calls[start:end] == [
        *both("on_train_batch_start"),
        "M.training_step",
        *both("on_before_backward"),
        "M.backward",
        *both("on_after_backward"),
        *both("on_before_optimizer_step"),
    ]
    assert trainer.global_step == 1


def test_docs_train_md_copies_the_loop_s_pseudocode_from_the_trainer_docstring() -> None:
    import textwrap
    from pathlib import Path

    import fulmen.train.trainer as trainer_module

    doc = trainer_module.__doc__ or ""
    start = doc.index("    fit(model, train_dataloaders")
    in_code = textwrap.dedent(doc[start : doc.index("\nOn an exception")]).strip("\n")
    page = (Path(__file__).parents[2] / "docs" / "train.md").read_text(encoding="utf-8")
    at = page.index("```\nfit(model, train_dataloaders") + len("```\n")
    in_docs = page[at : page.index("```", at)].strip("\n")
    assert in_docs == in_code


def test_evaluation_batch_hooks_pass_dataloader_idx_as_lightning_does() -> None:
    """Callbacks always get dataloader_idx; the module only when there are several loaders."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    class Module(Regressor):
        def on_validation_batch_start(self, batch: Any, batch_idx: int, *rest: Any) -> None:
            seen.append(("module start", (batch_idx, *rest)))

        def on_validation_batch_end(
            self, outputs: Any, batch: Any, batch_idx: int, *rest: Any
        ) -> None:
            seen.append(("module end", (batch_idx, *rest)))

        def validation_step(self, batch: Any, batch_idx: int, *rest: Any) -> None:
            super().validation_step(batch, batch_idx)

    class Spy(pl.Callback):
        def on_validation_batch_start(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            seen.append(("callback start", (args[1], *args[2:])))

        def on_validation_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            seen.append(("callback end", (args[2], *args[3:])))

    one = [("callback start", (0, 0)), ("module start", (0,))]
    one += [("callback end", (0, 0)), ("module end", (0,))]
    quiet_trainer(callbacks=[Spy()], limit_val_batches=1).validate(
        Module(), loader(), verbose=False
    )
    assert seen == one
    seen.clear()
    two = [loader(), loader()]
    quiet_trainer(callbacks=[Spy()], limit_val_batches=1).validate(Module(), two, verbose=False)
    assert seen == [
        ("callback start", (0, 0)),
        ("module start", (0, 0)),
        ("callback end", (0, 0)),
        ("module end", (0, 0)),
        ("callback start", (0, 1)),
        ("module start", (0, 1)),
        ("callback end", (0, 1)),
        ("module end", (0, 1)),
    ]
