"""The W&B media types: ``Image`` (with masks and boxes), ``Audio``, ``Video``, ``Html``.

Each checks and converts its input when it is made (so a malformed field raises in the caller,
before anything is written) and, when logged, stores its bytes through the run's
``MediaSink`` (see _media_store.py) and returns the reference that goes into the history row:
a W&B-shaped dict such as ``{"_type": "image-file", "path": "media/images/<sha>.png", ...}``
(docs/run-log-format.md, "Media"). numpy is imported when a value is made; torch only when a
tensor is given; Pillow only for PIL images, files and encoding.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fulmen.track._media_store import MediaSink, digest_name, npy_header

MAX_SEPARATED = 108  # W&B's cap on images under one key
_IMAGE_FORMATS = {"png": "png", "jpg": "jpg", "jpeg": "jpg"}
_MODES = ("L", "RGB", "RGBA")
_POSITION_ERROR = (
    "Each box must contain a position with: middle, width, and height or minX, maxX, minY, maxY."
)
_warned_keys: set[str] = set()


def _sha(*parts: bytes | memoryview) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def _number(value: Any) -> bool:
    """A number that is not a bool (numpy scalars included)."""
    kind: Any = type(value)
    return kind is not bool and isinstance(value, numbers.Real)


def _caption(caption: Any) -> str | None:
    if caption is None or isinstance(caption, str):
        return caption
    if _number(caption):
        return str(caption)
    raise TypeError(f"caption must be a string, got {type(caption).__name__} {caption!r}")


def _read_file(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {os.fspath(path)!r} ({exc.strerror})") from None


def _tensor_to_numpy(data: Any) -> Any:
    tensor = data.detach()
    if tensor.dtype.is_floating_point and tensor.dtype.itemsize < 4:
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.cpu().numpy()


def _is_tensor(data: Any) -> bool:
    return type(data).__module__.startswith("torch") and hasattr(data, "detach")


# --- pixels ---------------------------------------------------------------------------------------


def to_pixels(data: Any, normalize: bool = True, what: str = "Image") -> Any:  # noqa: PLR0912
    """A C-ordered uint8 array H x W (grey) or H x W x 3/4 owned by the caller (a copy when it
    shares memory with ``data``): numpy HWC/HW, a torch tensor CHW/HW, a PIL image, a list."""
    import numpy as np

    source = data
    if _is_tensor(data):
        array = _tensor_to_numpy(data)
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # CHW -> HWC
        elif array.ndim == 3:
            raise ValueError(
                f"{what}: a tensor must be C x H x W with C in 1, 3, 4 (or H x W), got shape "
                f"{tuple(array.shape)}"
            )
    elif type(data).__module__.startswith("PIL"):
        picture = data
        if picture.mode not in _MODES:
            rgba = "A" in picture.getbands() or "transparency" in picture.info
            picture = picture.convert("RGBA" if rgba else "L" if picture.mode in "1I" else "RGB")
        array = np.asarray(picture)
    else:
        try:
            array = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what}: cannot read pixels from {type(data).__name__}") from exc
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        hint = ""
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            hint = " (numpy arrays are H x W x C; torch tensors are C x H x W)"
        raise ValueError(
            f"{what}: pixels must be H x W or H x W x C with C in 1, 3, 4, got shape "
            f"{tuple(array.shape)}{hint}"
        )
    if 0 in array.shape:
        raise ValueError(f"{what}: the image is empty (shape {tuple(array.shape)})")
    kind = array.dtype.kind
    if kind == "b":
        array = array.astype(np.uint8) * 255
    elif kind == "f":
        array = np.nan_to_num(array.astype(np.float64, copy=False))
        if normalize:
            low = float(array.min())
            if low < 0:  # -1..1 (or any range below zero): stretched to 0..1, as W&B
                array = (array - low) / max(float(array.max()) - low, 1e-12)
            if float(array.max()) <= 1.0:
                array = array * 255.0
        array = np.rint(np.clip(array, 0, 255)).astype(np.uint8)
    elif kind in "iu":
        if array.dtype != np.uint8:
            array = np.clip(array, 0, 255).astype(np.uint8)
    else:
        raise TypeError(f"{what}: pixels of dtype {array.dtype} are not supported")
    array = np.ascontiguousarray(array)
    if isinstance(source, np.ndarray) and np.may_share_memory(array, source):
        array = array.copy()  # the caller may change its buffer after log()
    return array


def _mask_array(name: str, item: Mapping[str, Any]) -> Any:
    import numpy as np

    if "mask_data" not in item:
        if "path" in item:
            from PIL import Image as PILImage

            with PILImage.open(item["path"]) as picture:
                return np.ascontiguousarray(np.asarray(picture.convert("L")))
        raise TypeError(
            'Missing key "mask_data": An image mask requires mask data: a 2D array representing '
            "the predictions"
        )
    data = item["mask_data"]
    array = _tensor_to_numpy(data) if _is_tensor(data) else np.asarray(data)
    if array.ndim != 2:
        raise TypeError("mask_data must be a 2D array")
    kind = array.dtype.kind
    if kind == "f" and np.array_equal(array, np.rint(array)):
        kind = "i"  # whole numbers in a float array (an argmax cast to float)
    if kind not in "iub" or (array.size and (array.min() < 0 or array.max() > 255)):
        raise TypeError("Mask data must be integers between 0 and 255")
    return np.ascontiguousarray(array.astype(np.uint8))


def _class_labels(labels: Any) -> dict[str, str]:
    if not isinstance(labels, Mapping) or not all(
        _number(k) and isinstance(v, str) for k, v in labels.items()
    ):
        raise TypeError("Class labels must be a dictionary of numbers to strings")
    return {str(int(k)): v for k, v in labels.items()}


def _is_num(position: Mapping[str, Any], key: str) -> bool:
    return _number(position.get(key))


def _check_box(box: Any) -> dict[str, Any]:  # noqa: PLR0912 (one branch per W&B check)
    if not isinstance(box, Mapping) or "position" not in box:
        raise TypeError(_POSITION_ERROR)
    position = box["position"]
    if not isinstance(position, Mapping):
        raise TypeError(_POSITION_ERROR)
    middle = position.get("middle")
    if middle is not None and len(middle) == 2 and _is_num(position, "width"):
        ok = _is_num(position, "height") and all(isinstance(m, numbers.Number) for m in middle)
        keys: tuple[str, ...] = ("width", "height")
    else:
        keys = ("minX", "maxX", "minY", "maxY")
        ok = all(_is_num(position, k) for k in keys)
    if not ok:
        raise TypeError(_POSITION_ERROR)
    out: dict[str, Any] = {"position": {k: float(position[k]) for k in keys}}
    if keys[0] == "width":
        out["position"]["middle"] = [float(m) for m in middle]  # type: ignore[union-attr]
    domain = box.get("domain")
    if domain not in (None, "pixel"):
        raise TypeError(f'A box\'s domain must be "pixel" or absent (fractions), got {domain!r}')
    if domain is not None:
        out["domain"] = domain
    scores = box.get("scores")
    if scores is not None:
        if not isinstance(scores, Mapping):
            raise TypeError("Box scores must be a dictionary")
        for k, v in scores.items():
            if not isinstance(k, str):
                raise TypeError("A score key must be a string")
            if not _number(v):
                raise TypeError("A score value must be a number")
        out["scores"] = {k: float(v) for k, v in scores.items()}
    if "class_id" in box:
        class_id: Any = box["class_id"]
        if type(class_id) is bool or not isinstance(class_id, numbers.Integral):
            raise TypeError("A box's class_id must be an integer")
        out["class_id"] = int(box["class_id"])
    if "box_caption" in box:
        if not isinstance(box["box_caption"], str):
            raise TypeError("A box's caption must be a string")
        out["box_caption"] = box["box_caption"]
    return out


def _check_boxes(boxes: Any) -> dict[str, Any]:
    if not isinstance(boxes, Mapping):
        raise TypeError(
            'boxes must be a dict of {name: {"box_data": [...], "class_labels": {...}}}, got '
            f"{type(boxes).__name__}"
        )
    out: dict[str, Any] = {}
    for name, group in boxes.items():
        if not isinstance(group, Mapping):
            raise TypeError(f"boxes[{name!r}] must be a dict with box_data and class_labels")
        if "box_data" not in group:
            raise TypeError('Missing key "box_data": boxes need a list of box dicts')
        entry: dict[str, Any] = {}
        if "class_labels" in group:
            entry["class_labels"] = _class_labels(group["class_labels"])
        data = group["box_data"]
        if not isinstance(data, list):
            raise TypeError("Boxes must be a list")
        entry["box_data"] = [_check_box(box) for box in data]
        out[str(name)] = entry
    return out


class Image:
    """An image for ``run.log``: numpy HWC/HW, a torch tensor CHW, a PIL image, a PNG/JPEG path.

    ``masks``: ``{name: {"mask_data": 2-D ints 0..255 (or "path": a PNG), "class_labels":
    {int: str}}}``; ``boxes``: ``{name: {"box_data": [box, ...], "class_labels": {...}}}`` (W&B's
    format). Everything is checked here, so a mistake raises before anything is written.
    """

    _type = "image-file"

    def __init__(
        self,
        data_or_path: Any,
        mode: str | None = None,
        caption: str | None = None,
        grouping: int | None = None,
        classes: Any = None,
        boxes: Mapping[str, Any] | None = None,
        masks: Mapping[str, Any] | None = None,
        file_type: str | None = None,
        normalize: bool = True,
    ) -> None:
        if file_type is not None and file_type not in _IMAGE_FORMATS:
            raise ValueError(f"Image: file_type must be 'png' or 'jpg', got {file_type!r}")
        if mode is not None and mode not in _MODES:
            raise ValueError(f"Image: mode must be one of {', '.join(_MODES)}, got {mode!r}")
        if grouping is not None and (not isinstance(grouping, int) or isinstance(grouping, bool)):
            raise TypeError(f"Image: grouping must be an int, got {grouping!r}")
        self.caption = _caption(caption)
        self._grouping = grouping
        self._file: bytes | None = None
        self._pixels: Any = None
        self._ref: dict[str, Any] | None = None
        if isinstance(data_or_path, (str, os.PathLike)):
            self._from_file(data_or_path)
        else:
            self._pixels = to_pixels(data_or_path, normalize)
            if mode is not None and mode != self.mode:
                from PIL import Image as PILImage

                picture = PILImage.fromarray(self._pixels).convert(mode)
                self._pixels = to_pixels(picture)
            self.height, self.width = self._pixels.shape[:2]
            self.format = _IMAGE_FORMATS[file_type or "png"]
        self._classes = self._check_classes(classes)
        self._masks: dict[str, tuple[Any, dict[str, str] | None]] = {}
        if masks is not None:
            self._check_masks(masks)
        self._boxes = _check_boxes(boxes) if boxes is not None else None

    def _from_file(self, path: str | os.PathLike[str]) -> None:
        from PIL import Image as PILImage

        data = _read_file(path, "Image")
        suffix = Path(path).suffix.lower().lstrip(".")
        if suffix not in _IMAGE_FORMATS:
            raise ValueError(f"Image: {os.fspath(path)!r} is not a PNG or JPEG file (.png, .jpg)")
        import io

        try:
            with PILImage.open(io.BytesIO(data)) as picture:
                self.width, self.height = picture.size
        except OSError as exc:
            raise ValueError(
                f"Image: {os.fspath(path)!r} is not a readable image ({exc})"
            ) from None
        self._file = data
        self.format = _IMAGE_FORMATS[suffix]

    @property
    def mode(self) -> str:
        """L, RGB or RGBA (of a file: as stored)."""
        if self._pixels is None:
            return "file"
        return "L" if self._pixels.ndim == 2 else ("RGB", "RGBA")[self._pixels.shape[2] - 3]

    @staticmethod
    def _check_classes(classes: Any) -> list[dict[str, Any]] | None:
        if classes is None:
            return None
        items = getattr(classes, "_class_set", classes)
        if isinstance(items, Mapping):
            items = [{"id": k, "name": v} for k, v in items.items()]
        if not isinstance(items, Sequence) or not all(
            isinstance(c, Mapping)
            and isinstance(c.get("id"), int)
            and isinstance(c.get("name"), str)
            for c in items
        ):
            raise TypeError('classes must be a list of {"id": int, "name": str}')
        return [{"id": int(c["id"]), "name": str(c["name"])} for c in items]

    def _check_masks(self, masks: Any) -> None:
        if not isinstance(masks, Mapping):
            raise TypeError(
                'masks must be a dict of {name: {"mask_data": ..., "class_labels": {...}}}, got '
                f"{type(masks).__name__}"
            )
        for name, item in masks.items():
            if not isinstance(item, Mapping):
                raise TypeError(f"masks[{name!r}] must be a dict with mask_data and class_labels")
            labels = _class_labels(item["class_labels"]) if "class_labels" in item else None
            array = _mask_array(str(name), item)
            if array.shape != (self.height, self.width):
                raise ValueError(
                    f"mask {name!r}: mask_data is {array.shape[0]} x {array.shape[1]} but the "
                    f"image is {self.height} x {self.width}"
                )
            self._masks[str(name)] = (array, labels)

    def _media_ref(self, sink: MediaSink) -> dict[str, Any]:
        # The digests are computed once per object; storing is skipped when the run has them.
        if self._ref is None:
            self._ref = self._make_ref()
        ref = self._ref
        if self._file is not None:
            sink.put_bytes(ref["path"], self._file, ref["sha256"])
        else:
            sink.put_pixels(ref["path"], self._header, self._pixels)
        for name, (array, _) in self._masks.items():
            mask = ref["masks"][name]
            sink.put_pixels(mask["path"], npy_header(array.shape), array)
        return ref

    def _make_ref(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"_type": self._type}
        if self._file is not None:
            sha = _sha(self._file)
            ref["size"] = len(self._file)
        else:
            self._header = npy_header(self._pixels.shape)
            sha = _sha(self._header, memoryview(self._pixels).cast("B"))
        ref["path"] = f"media/images/{digest_name(sha)}.{self.format}"
        ref.update(sha256=sha, format=self.format, width=self.width, height=self.height)
        if self.caption is not None:
            ref["caption"] = self.caption
        if self._grouping is not None:
            ref["grouping"] = self._grouping
        if self._classes is not None:
            ref["classes"] = self._classes
        if self._masks:
            ref["masks"] = {name: _mask_ref(a, labels) for name, (a, labels) in self._masks.items()}
        if self._boxes is not None:
            ref["boxes"] = self._boxes
        return ref

    def __repr__(self) -> str:
        return f"<Image {self.width}x{self.height} {self.mode}>"


def _mask_ref(array: Any, labels: dict[str, str] | None) -> dict[str, Any]:

    sha = _sha(npy_header(array.shape), memoryview(array).cast("B"))
    path = f"media/images/mask/{digest_name(sha)}.mask.png"
    if labels is None:  # W&B's default: class_<n> for each value present
        # memchr per candidate value: a few microseconds where np.unique sorts (milliseconds)
        raw = array.tobytes()
        present = [v for v in range(int(array.max()) + 1) if raw.find(v) >= 0]
        labels = {str(v): f"class_{v}" for v in present}
    return {"_type": "mask", "path": path, "sha256": sha, "format": "png", "class_labels": labels}


# --- audio, video, html ---------------------------------------------------------------------------


class Audio:
    """Sound for ``run.log``: a numpy array (samples, or samples x channels; floats in -1..1 or
    int16) with ``sample_rate``, or a file (.wav, .mp3, .ogg, .flac). Arrays become 16-bit WAV."""

    _type = "audio-file"
    _FORMATS = ("wav", "mp3", "ogg", "flac")

    def __init__(
        self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None
    ) -> None:
        import numpy as np

        self.caption = _caption(caption)
        self.sample_rate = sample_rate
        self._ref: dict[str, Any] | None = None
        if isinstance(data_or_path, (str, os.PathLike)):
            suffix = Path(data_or_path).suffix.lower().lstrip(".")
            if suffix not in self._FORMATS:
                raise ValueError(
                    f"Audio: {os.fspath(data_or_path)!r} is not one of .wav, .mp3, .ogg, .flac"
                )
            self._data = _read_file(data_or_path, "Audio")
            self.format = suffix
            self.duration: float | None = None
            return
        if sample_rate is None:
            raise ValueError(
                'Argument "sample_rate" is required when instantiating Audio with raw data.'
            )
        if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
            raise ValueError(f"Audio: sample_rate must be a positive int, got {sample_rate!r}")
        raw = _tensor_to_numpy(data_or_path) if _is_tensor(data_or_path) else data_or_path
        array = np.asarray(raw)
        if array.ndim == 2 and array.shape[0] < array.shape[1] and array.shape[0] <= 8:
            array = array.T  # channels x samples -> samples x channels
        if array.ndim not in (1, 2) or array.size == 0:
            raise ValueError(
                f"Audio: data must be samples or samples x channels, got {array.shape}"
            )
        if array.dtype.kind == "f":
            array = np.rint(np.clip(array, -1.0, 1.0) * 32767).astype("<i2")
        elif array.dtype != np.int16:
            raise TypeError(f"Audio: samples must be floats in -1..1 or int16, got {array.dtype}")
        self._data = _wav(array.astype("<i2"), sample_rate)
        self.format = "wav"
        self.duration = array.shape[0] / sample_rate

    def _media_ref(self, sink: MediaSink) -> dict[str, Any]:
        if self._ref is None:
            sha = _sha(self._data)
            ref: dict[str, Any] = {
                "_type": self._type,
                "path": f"media/audio/{digest_name(sha)}.{self.format}",
                "sha256": sha,
                "size": len(self._data),
                "format": self.format,
            }
            for key in ("sample_rate", "duration", "caption"):
                if getattr(self, key) is not None:
                    ref[key] = getattr(self, key)
            self._ref = ref
        sink.put_bytes(self._ref["path"], self._data, self._ref["sha256"])
        return self._ref


def _wav(samples: Any, rate: int) -> bytes:
    import io
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


class Video:
    """A clip for ``run.log``: a numpy array T x C x H x W (or B x T x C x H x W, tiled as W&B
    does... here: the first clip) of uint8, written as an animated GIF; or a .gif/.mp4/.webm
    file, stored as it is. ``format`` other than "gif" needs a file (no encoder is bundled)."""

    _type = "video-file"
    _FORMATS = ("gif", "mp4", "webm", "ogg")

    def __init__(
        self,
        data_or_path: Any,
        caption: str | None = None,
        fps: int | None = None,
        format: str | None = None,
    ) -> None:
        import numpy as np

        self.caption = _caption(caption)
        self._ref: dict[str, Any] | None = None
        if fps is not None and (not isinstance(fps, (int, float)) or fps <= 0):
            raise ValueError(f"Video: fps must be a positive number, got {fps!r}")
        self.fps = fps or 4
        if format is not None and format not in self._FORMATS:
            raise ValueError(f"Video: format must be one of gif, mp4, webm, ogg, got {format!r}")
        if isinstance(data_or_path, (str, os.PathLike)):
            suffix = Path(data_or_path).suffix.lower().lstrip(".")
            if suffix not in self._FORMATS:
                raise ValueError(
                    f"Video: {os.fspath(data_or_path)!r} is not .gif, .mp4, .webm, .ogg"
                )
            self._data = _read_file(data_or_path, "Video")
            self.format = suffix
            self.width = self.height = None
            return
        if format not in (None, "gif"):
            raise ValueError(
                f"Video: format={format!r} from an array needs a video encoder, which fulmen does "
                "not bundle; use format='gif' or pass the path of an encoded file"
            )
        raw = _tensor_to_numpy(data_or_path) if _is_tensor(data_or_path) else data_or_path
        array = np.asarray(raw)
        if array.ndim == 5:
            array = array[0]
        if array.ndim != 4 or array.shape[1] not in (1, 3, 4):
            raise ValueError(f"Video: data must be T x C x H x W (C in 1, 3, 4), got {array.shape}")
        frames = [to_pixels(frame.transpose(1, 2, 0), what="Video") for frame in array]
        self.height, self.width = frames[0].shape[:2]
        self._data = _gif(frames, self.fps)
        self.format = "gif"

    def _media_ref(self, sink: MediaSink) -> dict[str, Any]:
        if self._ref is None:
            sha = _sha(self._data)
            ref: dict[str, Any] = {
                "_type": self._type,
                "path": f"media/videos/{digest_name(sha)}.{self.format}",
                "sha256": sha,
                "size": len(self._data),
                "format": self.format,
                "fps": self.fps,
            }
            for key in ("width", "height", "caption"):
                if getattr(self, key) is not None:
                    ref[key] = getattr(self, key)
            self._ref = ref
        sink.put_bytes(self._ref["path"], self._data, self._ref["sha256"])
        return self._ref


def _gif(frames: list[Any], fps: float) -> bytes:
    import io

    from PIL import Image as PILImage

    pictures = [PILImage.fromarray(f).convert("RGB") for f in frames]
    out = io.BytesIO()
    pictures[0].save(
        out, format="GIF", save_all=True, append_images=pictures[1:], duration=1000 / fps, loop=0
    )
    return out.getvalue()


_INJECT = '<meta charset="utf-8"><style>body{font-family:system-ui,sans-serif;margin:8px}</style>'


class Html:
    """HTML for ``run.log``: a string, or the path of an .html file. ``inject`` adds a charset
    and a plain stylesheet to the page's head (W&B injects its own stylesheet)."""

    _type = "html-file"

    def __init__(self, data: Any, inject: bool = True) -> None:
        if isinstance(data, os.PathLike) or (
            isinstance(data, str) and data.endswith(".html") and os.path.isfile(data)
        ):
            text = _read_file(data, "Html").decode("utf-8", "replace")
        elif isinstance(data, str):
            text = data
        elif hasattr(data, "read"):
            text = data.read()
        else:
            raise TypeError(
                f"Html: data must be a string or an .html path, got {type(data).__name__}"
            )
        if inject:
            head = text.find("<head>")
            text = (
                text[: head + 6] + _INJECT + text[head + 6 :]
                if head >= 0
                else f"<head>{_INJECT}</head>{text}"
            )
        self.html = text
        self._data = text.encode("utf-8")
        self._ref: dict[str, Any] | None = None

    def _media_ref(self, sink: MediaSink) -> dict[str, Any]:
        if self._ref is None:
            sha = _sha(self._data)
            self._ref = {
                "_type": self._type,
                "path": f"media/html/{digest_name(sha)}.html",
                "sha256": sha,
                "size": len(self._data),
            }
        sink.put_bytes(self._ref["path"], self._data, self._ref["sha256"])
        return self._ref


# --- several under one key ------------------------------------------------------------------------

_SEQUENCE_TYPES = {Image: "images/separated", Audio: "audio", Video: "videos", Html: "html"}
_SEQUENCE_FIELDS = {Image: "images", Audio: "audio", Video: "videos", Html: "html"}


def is_media(value: Any) -> bool:
    return hasattr(value, "_media_ref")


def sequence_ref(key: str, items: Sequence[Any], sink: MediaSink) -> dict[str, Any]:
    """A list of media under one key: one value (W&B's "images/separated" for images)."""
    kind = type(items[0])
    if kind not in _SEQUENCE_TYPES or any(type(item) is not kind for item in items):
        names = sorted({type(item).__name__ for item in items})
        raise TypeError(
            f"cannot log key {key!r}: a list under one key must hold media of one type (Image, "
            f"Audio, Video or Html), got {', '.join(names)}"
        )
    if kind is Image and len(items) > MAX_SEPARATED:
        if key not in _warned_keys:
            _warned_keys.add(key)
            warnings.warn(
                f"key {key!r}: only {MAX_SEPARATED} images are logged per key and step; "
                f"{len(items) - MAX_SEPARATED} more were left out (said once per key)",
                UserWarning,
                stacklevel=5,
            )
        items = items[:MAX_SEPARATED]
    refs = [item._media_ref(sink) for item in items]
    out: dict[str, Any] = {"_type": _SEQUENCE_TYPES[kind], "count": len(refs)}
    if kind is Image:
        out["filenames"] = [r["path"] for r in refs]
        captions = [r.get("caption") for r in refs]
        if any(c is not None for c in captions):
            out["captions"] = captions
    out[_SEQUENCE_FIELDS[kind]] = refs
    return out
