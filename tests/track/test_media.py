"""Media through the run log: Image (numpy, tensor, PIL, file; masks and boxes), Audio, Video,
Html; content addressing; W&B's validation messages; a run killed by SIGKILL keeps its images."""

from __future__ import annotations

import io
import os
import signal
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from fulmen import track
from fulmen.track import Api
from tests.track.conftest import start_child

RNG = np.random.default_rng(7)
FRAME = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)
MASK = RNG.integers(0, 8, (24, 40), dtype=np.uint8)


def _one(key: str) -> tuple[Any, dict[str, Any]]:
    run = Api().runs()[-1]
    rows = [r for r in run.history(pandas=False) if key in r]
    return run, rows[-1][key]


def _pixels(run: Any, path: str, tmp: Path) -> np.ndarray:
    local = run.file(path).download(tmp / "dl", replace=True)
    with PILImage.open(local) as picture:
        return np.asarray(picture)


def _files(run: Any) -> list[Path]:
    return [p for p in (run.dir / "files" / "media").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: FRAME, id="numpy-hwc"),
        pytest.param(lambda: PILImage.fromarray(FRAME), id="pil"),
        pytest.param(
            lambda: __import__("torch").from_numpy(FRAME.transpose(2, 0, 1).copy()), id="tensor"
        ),
        pytest.param(lambda: FRAME.astype(np.float32) / 255, id="float-0-1"),
    ],
)
def test_image_round_trip_is_pixel_exact(make: Any, tmp_path: Path) -> None:
    run = track.init(project="media")
    masks = {"pred": {"mask_data": MASK, "class_labels": {0: "road", 1: "car"}}}
    run.log({"frame": track.Image(make(), caption="step 0", masks=masks)})
    run.finish()
    api_run, ref = _one("frame")
    assert ref["_type"] == "image-file"
    assert (ref["width"], ref["height"], ref["format"]) == (40, 24, "png")
    assert ref["caption"] == "step 0"
    assert ref["path"].startswith("media/images/")
    assert ref["size"] > 0
    assert np.array_equal(_pixels(api_run, ref["path"], tmp_path), FRAME)
    mask = ref["masks"]["pred"]
    assert mask["_type"] == "mask"
    assert mask["class_labels"] == {"0": "road", "1": "car"}
    assert np.array_equal(_pixels(api_run, mask["path"], tmp_path), MASK)
    assert api_run.summary["frame"]["path"] == ref["path"]


def test_grey_and_rgba_and_tensor_grey(tmp_path: Path) -> None:
    import torch

    grey = FRAME[:, :, 0].copy()
    rgba = np.dstack([FRAME, np.full((24, 40), 200, np.uint8)])
    run = track.init(project="media")
    run.log(
        {
            "grey": track.Image(grey),
            "rgba": track.Image(rgba),
            "t": track.Image(torch.from_numpy(grey)[None]),
        }
    )
    run.finish()
    api_run = Api().runs()[-1]
    row = api_run.history(pandas=False)[0]
    assert np.array_equal(_pixels(api_run, row["grey"]["path"], tmp_path), grey)
    assert np.array_equal(_pixels(api_run, row["rgba"]["path"], tmp_path), rgba)
    assert row["t"]["path"] == row["grey"]["path"]  # same pixels: one file


def test_image_from_png_and_jpeg_files_keeps_their_bytes(tmp_path: Path) -> None:
    png, jpg = tmp_path / "a.png", tmp_path / "b.jpg"
    PILImage.fromarray(FRAME).save(png)
    PILImage.fromarray(FRAME).save(jpg, quality=90)
    run = track.init(project="media")
    run.log({"png": track.Image(str(png)), "jpg": track.Image(jpg)})
    run.finish()
    api_run, ref = _one("png")
    assert ref["format"] == "png"
    assert ref["size"] == png.stat().st_size
    assert api_run.file(ref["path"]).read() == png.read_bytes()
    jref = api_run.history(pandas=False)[0]["jpg"]
    assert jref["format"] == "jpg"
    assert jref["path"].endswith(".jpg")
    assert api_run.file(jref["path"]).read() == jpg.read_bytes()


def test_mask_from_png_path(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    PILImage.fromarray(MASK).save(path)
    run = track.init(project="media")
    run.log({"f": track.Image(FRAME, masks={"gt": {"path": str(path)}})})
    run.finish()
    api_run, ref = _one("f")
    assert np.array_equal(_pixels(api_run, ref["masks"]["gt"]["path"], tmp_path), MASK)
    labels = ref["masks"]["gt"]["class_labels"]
    assert labels == {str(v): f"class_{v}" for v in np.unique(MASK)}  # W&B's default names


def test_boxes_are_kept_in_the_reference() -> None:
    boxes = {
        "pred": {
            "box_data": [
                {
                    "position": {"minX": 1, "maxX": 10, "minY": 2, "maxY": 8},
                    "domain": "pixel",
                    "class_id": 2,
                    "box_caption": "car 0.9",
                    "scores": {"conf": 0.9},
                },
                {"position": {"middle": [0.5, 0.5], "width": 0.2, "height": 0.1}, "class_id": 1},
            ],
            "class_labels": {1: "person", 2: "car"},
        }
    }
    run = track.init(project="media")
    run.log({"b": track.Image(FRAME, boxes=boxes)})
    run.finish()
    _, ref = _one("b")
    got = ref["boxes"]["pred"]
    assert got["class_labels"] == {"1": "person", "2": "car"}
    assert got["box_data"][0] == {
        "position": {"minX": 1.0, "maxX": 10.0, "minY": 2.0, "maxY": 8.0},
        "domain": "pixel",
        "class_id": 2,
        "box_caption": "car 0.9",
        "scores": {"conf": 0.9},
    }
    assert got["box_data"][1]["position"] == {"width": 0.2, "height": 0.1, "middle": [0.5, 0.5]}


BOX_OK: dict[str, Any] = {"position": {"minX": 0, "maxX": 1, "minY": 0, "maxY": 1}}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"masks": {"m": {"class_labels": {}}}}, TypeError, 'Missing key "mask_data"'),
        ({"masks": {"m": {"mask_data": MASK[None]}}}, TypeError, "mask_data must be a 2D array"),
        (
            {"masks": {"m": {"mask_data": MASK.astype(np.int64) + 300}}},
            TypeError,
            "Mask data must be integers between 0 and 255",
        ),
        (
            {"masks": {"m": {"mask_data": MASK, "class_labels": {"a": "road"}}}},
            TypeError,
            "Class labels must be a dictionary of numbers to strings",
        ),
        (
            {"masks": {"m": {"mask_data": MASK, "class_labels": {1: 2}}}},
            TypeError,
            "Class labels must be a dictionary of numbers to strings",
        ),
        ({"masks": {"m": {"mask_data": MASK[:5]}}}, ValueError, "mask 'm': mask_data is 5 x 40"),
        ({"masks": [MASK]}, TypeError, "masks must be a dict"),
        ({"boxes": {"b": {}}}, TypeError, 'Missing key "box_data"'),
        ({"boxes": {"b": {"box_data": "x"}}}, TypeError, "Boxes must be a list"),
        ({"boxes": {"b": {"box_data": [{}]}}}, TypeError, "Each box must contain a position"),
        (
            {"boxes": {"b": {"box_data": [{"position": {"minX": 0, "maxX": 1, "minY": 0}}]}}},
            TypeError,
            "Each box must contain a position",
        ),
        (
            {"boxes": {"b": {"box_data": [{**BOX_OK, "scores": [1]}]}}},
            TypeError,
            "Box scores must be a dictionary",
        ),
        (
            {"boxes": {"b": {"box_data": [{**BOX_OK, "scores": {1: 1}}]}}},
            TypeError,
            "A score key must be a string",
        ),
        (
            {"boxes": {"b": {"box_data": [{**BOX_OK, "scores": {"s": "x"}}]}}},
            TypeError,
            "A score value must be a number",
        ),
        (
            {"boxes": {"b": {"box_data": [{**BOX_OK, "class_id": 1.5}]}}},
            TypeError,
            "A box's class_id must be an integer",
        ),
        (
            {"boxes": {"b": {"box_data": [{**BOX_OK, "box_caption": 3}]}}},
            TypeError,
            "A box's caption must be a string",
        ),
        (
            {"boxes": {"b": {"box_data": [BOX_OK], "class_labels": {1.5j: "x"}}}},
            TypeError,
            "Class labels must be a dictionary of numbers to strings",
        ),
        (
            {"boxes": {"b": {"box_data": [{**BOX_OK, "domain": "percent"}]}}},
            TypeError,
            "A box's domain must be",
        ),
        ({"file_type": "bmp"}, ValueError, "file_type must be 'png' or 'jpg'"),
        ({"mode": "CMYK"}, ValueError, "mode must be one of L, RGB, RGBA"),
        ({"caption": ["x"]}, TypeError, "caption must be a string"),
    ],
)
def test_malformed_fields_raise_before_anything_is_written(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    run = track.init(project="media")
    with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
        run.log({"img": track.Image(FRAME, **kwargs)})
    run.finish()
    api_run = Api().runs()[-1]
    assert api_run.rows == 0
    assert not (api_run.dir / "files" / "media").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((3, 24, 40), np.uint8), "numpy arrays are H x W x C"),
        (np.zeros((2, 2, 2, 2), np.uint8), "pixels must be H x W or H x W x C"),
        (np.zeros((0, 4), np.uint8), "the image is empty"),
        (np.array([["a"]]), "pixels of dtype <U1 are not supported"),
        ("missing.png", "cannot read 'missing.png'"),
    ],
)
def test_bad_pixels_name_the_problem(data: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        track.Image(data)


def test_same_image_twice_is_stored_once() -> None:
    run = track.init(project="media")
    for step in range(3):
        run.log({"a": track.Image(FRAME), "b": track.Image(FRAME.copy())}, step=step)
    run.finish()
    api_run = Api().runs()[-1]
    paths = {r[k]["path"] for r in api_run.history(pandas=False) for k in ("a", "b")}
    assert len(paths) == 1
    assert len(_files(api_run)) == 1
    assert [f["path"] for f in api_run.files if f["type"] == "media"] == list(paths)


def test_changing_the_array_after_log_does_not_change_what_was_logged(tmp_path: Path) -> None:
    frame = FRAME.copy()
    image = track.Image(frame)
    frame[:] = 0
    run = track.init(project="media")
    run.log({"a": image})
    run.finish()
    api_run, ref = _one("a")
    assert np.array_equal(_pixels(api_run, ref["path"], tmp_path), FRAME)


def test_a_list_of_images_is_one_value_capped_at_108(tmp_path: Path) -> None:
    images = [track.Image(np.full((4, 4), i, np.uint8), caption=str(i)) for i in range(110)]
    run = track.init(project="media")
    with pytest.warns(UserWarning, match="only 108 images are logged per key"):
        run.log({"grid": images})
    run.log({"few": images[:2]})
    run.finish()
    api_run = Api().runs()[-1]
    rows = api_run.history(pandas=False)
    grid = rows[0]["grid"]
    assert grid["_type"] == "images/separated"
    assert grid["count"] == 108
    assert len(grid["images"]) == 108
    assert grid["captions"][:3] == ["0", "1", "2"]
    assert grid["filenames"][5] == grid["images"][5]["path"]
    assert np.array_equal(
        _pixels(api_run, grid["images"][107]["path"], tmp_path), np.full((4, 4), 107)
    )
    assert rows[1]["few"]["count"] == 2


def test_a_list_of_mixed_media_is_refused() -> None:
    run = track.init(project="media")
    with pytest.raises(TypeError, match="media of one type"):
        run.log({"m": [track.Image(FRAME), track.Html("<p>x</p>")]})


def test_audio_from_an_array_is_a_wav(tmp_path: Path) -> None:
    tone = np.sin(np.linspace(0, 440 * 2 * np.pi, 8000)).astype(np.float32) * 0.5
    run = track.init(project="media")
    run.log({"a": track.Audio(tone, sample_rate=8000, caption="tone")})
    run.finish()
    api_run, ref = _one("a")
    assert ref["_type"] == "audio-file"
    assert ref["sample_rate"] == 8000
    assert ref["duration"] == pytest.approx(1.0)
    assert ref["caption"] == "tone"
    with wave.open(io.BytesIO(api_run.file(ref["path"]).read())) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (8000, 1, 8000)
        got = np.frombuffer(w.readframes(8000), "<i2")
    assert np.array_equal(got, np.rint(tone * 32767).astype("<i2"))


def test_audio_needs_a_sample_rate() -> None:
    with pytest.raises(ValueError, match='Argument "sample_rate" is required'):
        track.Audio(np.zeros(10))


def test_video_from_an_array_is_a_gif(tmp_path: Path) -> None:
    clip = RNG.integers(0, 256, (5, 3, 16, 20), dtype=np.uint8)
    run = track.init(project="media")
    run.log({"v": track.Video(clip, fps=10, caption="c")})
    run.finish()
    api_run, ref = _one("v")
    assert (ref["_type"], ref["format"], ref["fps"]) == ("video-file", "gif", 10)
    assert (ref["width"], ref["height"]) == (20, 16)
    with PILImage.open(io.BytesIO(api_run.file(ref["path"]).read())) as gif:
        assert gif.n_frames == 5


def test_video_mp4_from_an_array_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="use format='gif' or pass the path"):
        track.Video(np.zeros((2, 3, 4, 4), np.uint8), format="mp4")


def test_html_is_stored_with_its_head_injected() -> None:
    run = track.init(project="media")
    run.log({"h": track.Html("<html><head></head><body>hi</body></html>")})
    run.finish()
    api_run, ref = _one("h")
    assert ref["_type"] == "html-file"
    text = api_run.file(ref["path"]).read().decode()
    assert text.startswith("<html><head><meta charset")
    assert text.endswith("<body>hi</body></html>")
    assert track.Html("<p>x</p>", inject=False).html == "<p>x</p>"


def test_file_outside_the_run_is_refused() -> None:
    run = track.init(project="media")
    run.finish()
    with pytest.raises(ValueError, match="outside the run's files"):
        Api().runs()[-1].file("../../x")


KILLED = """
    import sys
    import numpy as np
    from fulmen import track

    run = track.init(project="kill", id="k")
    rng = np.random.default_rng(0)
    for i in range(1000):
        frame = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        frame[0, 0, 0] = i % 256
        frame[0, 1, 0] = i // 256
        mask = (frame[:, :, 1] % 8).astype(np.uint8)
        run.log({"i": i, "frame": track.Image(frame, masks={"m": {"mask_data": mask}})})
        print(i, flush=True)
"""


@pytest.mark.slow
def test_sigkill_loses_no_image_that_log_accepted(tmp_path: Path) -> None:
    child = start_child(KILLED, tmp_path)
    assert child.stdout is not None
    seen = -1
    for line in child.stdout:
        seen = int(line)
        if seen >= 40:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()
    run = Api().run("k")
    rows = [r for r in run.history(pandas=False) if "frame" in r]
    assert len(rows) >= seen + 1  # every log() that returned (and printed) is in the run
    rng = np.random.default_rng(0)
    for row in rows:
        frame = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        frame[0, 0, 0], frame[0, 1, 0] = row["i"] % 256, row["i"] // 256
        got = np.asarray(PILImage.open(io.BytesIO(run.file(row["frame"]["path"]).read())))
        assert np.array_equal(got, frame), row["i"]
        mask = np.asarray(
            PILImage.open(io.BytesIO(run.file(row["frame"]["masks"]["m"]["path"]).read()))
        )
        assert np.array_equal(mask, frame[:, :, 1] % 8)
    assert not list((run.dir / "files" / "media").rglob("*.npy"))  # all encoded by the reader


def test_without_the_helper_process_images_are_encoded_in_a_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fulmen.track import _media_store

    monkeypatch.setattr(_media_store, "_start_worker", lambda: None)
    run = track.init(project="media")
    run.log({"a": track.Image(FRAME)})
    run.finish()
    api_run, ref = _one("a")
    assert np.array_equal(_pixels(api_run, ref["path"], tmp_path), FRAME)
    assert [f["path"] for f in api_run.files if f["type"] == "media"] == [ref["path"]]
