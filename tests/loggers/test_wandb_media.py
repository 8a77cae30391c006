"""WandbLogger's media methods: Lightning's checks and messages, per-item keyword arguments, and
images logged from a callback's on_validation_batch_end against trainer/global_step."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

import fulmen as pl
from fulmen.loggers import WandbLogger
from fulmen.track import Api
from tests.loggers.test_wandb import Model, data, trainer

FRAME = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)


def _rows(logger: WandbLogger) -> list[dict[str, Any]]:
    return Api().run(str(logger.version)).history(pandas=False)  # type: ignore[no-any-return]


def test_log_image_splits_keyword_arguments_per_image() -> None:
    logger = WandbLogger(project="media")
    masks = [{"gt": {"mask_data": np.full((6, 8), i, np.uint8)}} for i in range(2)]
    logger.log_image(
        "samples", [FRAME, FRAME[::-1].copy()], step=3, caption=["a", "b"], masks=masks
    )
    logger.finish()
    row = _rows(logger)[0]
    assert row["trainer/global_step"] == 3
    value = row["samples"]
    assert value["_type"] == "images/separated"
    assert value["count"] == 2
    assert [i["caption"] for i in value["images"]] == ["a", "b"]
    assert value["images"][1]["masks"]["gt"]["class_labels"] == {"1": "class_1"}


def test_log_image_needs_a_list() -> None:
    logger = WandbLogger(project="media")
    with pytest.raises(
        TypeError, match=r"Expected a list as \"images\", found <class 'numpy\.ndarray'>"
    ):
        logger.log_image("x", FRAME)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='Expected a list as "audios"'):
        logger.log_audio("x", np.zeros(4))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='Expected a list as "videos"'):
        logger.log_video("x", "clip.gif")  # type: ignore[arg-type]


def test_every_keyword_argument_has_one_item_per_image() -> None:
    logger = WandbLogger(project="media")
    with pytest.raises(ValueError, match="Expected 2 items but only found 1 for caption"):
        logger.log_image("x", [FRAME, FRAME], caption=["only one"])


def test_log_audio_and_log_video_per_item_arguments() -> None:
    logger = WandbLogger(project="media")
    logger.log_audio("sound", [np.zeros(800), np.ones(400) * 0.5], sample_rate=[8000, 4000])
    clip = np.zeros((3, 3, 4, 4), np.uint8)
    logger.log_video("clip", [clip], fps=[2], caption=["c"])
    logger.finish()
    rows = _rows(logger)
    sound = rows[0]["sound"]
    assert sound["_type"] == "audio"
    assert [a["sample_rate"] for a in sound["audio"]] == [8000, 4000]
    assert [a["duration"] for a in sound["audio"]] == [0.1, 0.1]
    video = rows[1]["clip"]["videos"][0]
    assert (video["fps"], video["caption"], video["format"]) == (2, "c", "gif")


def test_log_table_is_a_real_table_with_image_cells() -> None:
    logger = WandbLogger(project="media")
    from fulmen.track import Image

    logger.log_table("preds", columns=["image", "iou"], data=[[Image(FRAME), 0.5]], step=1)
    logger.finish()
    api_run = Api().run(str(logger.version))
    ref = api_run.history(pandas=False)[0]["preds"]
    content = json.loads(api_run.file(ref["path"]).read())
    assert content["data"][0][0]["_type"] == "image-file"
    assert content["data"][0][1] == 0.5


class LogPredictions(pl.Callback):
    """Logs the first validation batch's inputs as images, each validation epoch."""

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if batch_idx != 0:
            return
        x, _ = batch
        pictures = [(row.reshape(2, 2) > 0).to(torch.uint8) * 255 for row in x[:3]]
        trainer.logger.log_image("val/inputs", pictures, caption=[f"sample {i}" for i in range(3)])


def test_log_image_from_a_callback_during_fit_against_global_step() -> None:
    logger = WandbLogger(project="media")
    fit = trainer(logger, callbacks=[LogPredictions()], max_epochs=2)
    fit.fit(Model(), data(), data(16))
    logger.finish()
    rows = [r for r in _rows(logger) if "val/inputs" in r]
    assert len(rows) == 2  # one per validation epoch
    assert [r["val/inputs"]["count"] for r in rows] == [3, 3]
    # no step given: the last trainer/global_step (W&B's step_sync), the end of each epoch
    assert [r["trainer/global_step"] for r in rows] == [3, 7]
    run = Api().run(str(logger.version))
    assert any(m["name"] == "*" and m["step_metric"] == "trainer/global_step" for m in run.metrics)
    first = rows[0]["val/inputs"]["images"][0]
    assert (first["width"], first["height"]) == (2, 2)
    assert run.file(first["path"]).size > 0


def test_other_ranks_log_no_media(monkeypatch: pytest.MonkeyPatch) -> None:
    from fulmen.train.utilities import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = WandbLogger(project="media")
    logger.log_image("x", [FRAME])
    logger.log_table("t", columns=["a"], data=[[1]])
    assert Api().runs() == []
