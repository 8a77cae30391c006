"""Logging one camera frame with a segmentation mask: time on the caller's thread, and bytes.

The frame is 256 x 512 RGB (a drawn street scene with sensor noise) with one 8-class mask, the
case of issue 14. Cases, each one ``log()`` of ``Image(frame, masks=...)`` (a new frame every
call, so nothing is deduplicated):

- ``fulmen``: the pixels are written durably (``.npy``) before ``log()`` returns; the PNG is
  encoded afterwards by the run's encoder process (fed by a thread), and the case waits for it
  between calls, untimed, as when an image is logged every 50 steps;
- ``wandb`` (offline, when importable): it encodes both PNGs before ``log()`` returns;
- ``pillow-png``: encoding the frame and the mask as PNG with Pillow's default settings, what any
  client that encodes on the caller's thread pays at least. The baseline when wandb is absent.

    python benchmarks/bench_media.py [--repeats 5] [--warmup 1]

Also printed: the PNG bytes fulmen stores against Pillow's default encoding, and what a training
step pays on average when one such image is logged every 50 steps.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import Case, Unavailable, main

CALLS = 20  # log() calls per measurement
EVERY = 50  # "logged every 50 steps"
WORK = Path(tempfile.mkdtemp(prefix="fulmen-bench-media-"))
os.environ.update(
    {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(WORK / "wandb"),
        "WANDB_CONSOLE": "off",
        "FULMEN_CONSOLE": "off",
        "FULMEN_DIR": str(WORK / "fulmen-runs"),
        "FULMEN_DISABLE_GIT": "true",
        "FULMEN_STATS_INTERVAL": "0",
    }
)
(WORK / "wandb").mkdir()
HAS_WANDB = importlib.util.find_spec("wandb") is not None


def scene(seed: int = 0) -> tuple[Any, Any]:
    """A 256 x 512 street-like frame (sky, buildings, road, cars, noise) and its 8-class mask."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = 256, 512
    y, x = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), np.uint8)  # 0 sky
    mask[y > 60 + 20 * np.sin(x / 50)] = 1  # buildings
    mask[y > 150] = 2  # road
    mask[(y > 150) & (abs(x - 256) > 120 + (y - 150))] = 3  # sidewalk
    mask[(y > 80) & (y < 150) & ((x // 37) % 5 == 0)] = 4  # vegetation
    for cx in rng.integers(40, 470, 4):
        mask[170:215, cx - 30 : cx + 30] = 5  # cars
    mask[120:200, 90:100] = 6  # a person
    mask[140:150, 300:330] = 7  # a sign
    palette = np.array(
        [[135, 180, 235], [120, 110, 105], [80, 80, 85], [150, 150, 140], [60, 130, 50],
         [180, 30, 40], [220, 180, 150], [230, 200, 40]],
        dtype=np.float64,
    )  # fmt: skip
    frame = palette[mask] + 25 * np.sin(x / 23.0)[..., None] * (mask[..., None] == 1)
    frame += rng.normal(0, 6, frame.shape)  # sensor noise: what makes photos hard to compress
    return np.clip(frame, 0, 255).astype(np.uint8), mask


FRAME, MASK = scene()


def frames() -> list[tuple[Any, Any]]:
    out = []
    for i in range(CALLS):
        f, m = FRAME.copy(), MASK.copy()
        f[0, 0, 0] = m[0, 0] = i % 8  # a different frame and mask every call: no deduplication
        f[0, 0, 1] = i
        out.append((f, m))
    return out


def _png(array: Any) -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def fulmen_case() -> float:
    from fulmen import track
    from fulmen.track._media_store import sink_of

    run = track.init(project="bench-media")
    batch = frames()
    elapsed = 0.0
    for i, (f, m) in enumerate(batch):
        start = time.perf_counter()
        run.log({"frame": track.Image(f, masks={"pred": {"mask_data": m}}), "i": i})
        elapsed += time.perf_counter() - start
        # the PNG is encoded before the next image comes, as when one is logged every 50 steps
        # (back to back on 2 busy cores, the encoder process would take the caller's CPU)
        sink_of(run).drain()
    run.finish()
    return elapsed / CALLS


def wandb_case() -> float:
    if not HAS_WANDB:
        raise Unavailable("not installed")
    import wandb

    run = wandb.init(project="bench-media")
    batch = frames()
    elapsed = 0.0
    for i, (f, m) in enumerate(batch):
        start = time.perf_counter()
        run.log({"frame": wandb.Image(f, masks={"pred": {"mask_data": m}}), "i": i})
        elapsed += time.perf_counter() - start
        time.sleep(0.05)  # as fulmen's drain: its service gets the time to write it
    run.finish()
    return elapsed / CALLS


def pillow_case() -> float:
    batch = frames()
    start = time.perf_counter()
    for f, m in batch:
        _png(f)
        _png(m)
    return (time.perf_counter() - start) / CALLS


def sizes() -> dict[str, int]:
    """fulmen's stored PNG bytes for the frame and the mask, and Pillow's default encoding."""
    from fulmen import track
    from fulmen.track import Api

    run = track.init(project="bench-media-bytes")
    run.log({"frame": track.Image(FRAME, masks={"pred": {"mask_data": MASK}})})
    run.finish()
    ref = Api(dir=os.environ["FULMEN_DIR"]).run(run.id).history(pandas=False)[0]["frame"]
    return {
        "fulmen_frame": ref["size"],
        "fulmen_mask": ref["masks"]["pred"]["size"],
        "pillow_frame": len(_png(FRAME)),
        "pillow_mask": len(_png(MASK)),
    }


CASES = [
    Case("fulmen", fulmen_case, "Image(frame, masks) + log(): pixels durable, PNG off-thread"),
    Case("wandb", wandb_case, "wandb.Image + log(), offline: PNG encoded before log() returns"),
    Case("pillow-png", pillow_case, "Pillow PNG, default level: frame + mask on the caller"),
]


if __name__ == "__main__":
    report = main(
        "media",
        "Logging a 256x512 RGB frame with one 8-class mask (per log() call, caller's thread)",
        CASES,
        baseline="wandb" if HAS_WANDB else "pillow-png",
        unit="ms",
        scale=1e3,
    )
    if report is not None:
        b = sizes()
        print(
            f"\nPNG bytes: frame {b['fulmen_frame']} (Pillow default {b['pillow_frame']}, "
            f"{b['fulmen_frame'] / b['pillow_frame']:.2f}x), mask {b['fulmen_mask']} "
            f"(Pillow default {b['pillow_mask']})"
        )
        median = next(c.median for c in report.results if c.name == "fulmen")
        if median is not None:
            print(
                f"a training step logging this image every {EVERY} steps pays "
                f"{median * 1e3 / EVERY:.3f} ms on average on its thread; the encoder process "
                "spends about one Pillow default encoding (the pillow-png row) per image"
            )
