"""What may be logged, and how it is encoded: key checks, value conversion, ``Histogram``.

Conversion produces ``(code, value)`` with the run log's column codes (see runlog.py): ``d`` f64,
``f`` f32, ``q`` i64, ``?`` bool, ``s`` string, ``j`` JSON. numpy and torch are never imported
here at module level: a value's type is recognized by its module name, and numpy is imported only
to build a histogram.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

MAX_KEY_LENGTH = 256
MAX_DEPTH = 100  # levels of nested dicts and lists in one logged value or config
RESERVED_KEYS = frozenset({"_step", "_runtime", "_timestamp"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_FLOAT_MAX = sys.float_info.max  # ints beyond it are refused: no chart or server holds them
_PLAIN = frozenset({float, str, bool, type(None)})  # what check_json has nothing to check in

# Types whose column code follows from the type alone: these rows can take log()'s fast path.
TYPE_CODES: dict[type, str] = {float: "d", int: "q", bool: "?"}


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (os.fsdecode's stand-in for undecodable bytes)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def check_key(key: object) -> str | None:  # noqa: PLR0911 (one return per rule)
    """Why ``key`` cannot be a metric key, or None when it can."""
    if not isinstance(key, str):
        return f"key {key!r} is a {type(key).__name__}, not a string"
    if not key:
        return "key '' is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"key {key[:40]!r}... is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
    if _CONTROL.search(key):
        return f"key {key!r} contains a control character"
    if has_surrogate(key):
        return f"key {key!r} {SURROGATE_HINT}"
    if key in RESERVED_KEYS:
        return f"key {key!r} is reserved (fulmen sets _step, _runtime and _timestamp itself)"
    return None


SURROGATE_HINT = (
    "contains a lone surrogate (undecodable bytes, as os.fsdecode gives for a non-UTF-8 file "
    "name); names must be valid Unicode: use os.fsencode(s).decode('utf-8', 'backslashreplace')"
)


def _string(value: str) -> tuple[str, str]:
    """A string's column: ``s`` (UTF-8); ``j`` when it holds a lone surrogate, which UTF-8 cannot
    hold and JSON escapes (``"\\udcff"``), so the reader gets the same str back."""
    return ("j" if has_surrogate(value) else "s"), value


def _big_int(key: str, value: int) -> tuple[str, int]:
    """An int beyond int64: a JSON number, exact; beyond the float range it is refused."""
    if -_FLOAT_MAX <= value <= _FLOAT_MAX:
        return "j", value
    raise ValueError(
        f"cannot log key {key!r}: the int {_digits(value)} is beyond the float range (about "
        "1.8e308) that charts and the server hold; log str(value) to keep its digits"
    )


def _digits(value: int) -> str:
    # str() of an int this big may itself refuse (sys.set_int_max_str_digits): count from bits
    return f"of about {int(abs(value).bit_length() * math.log10(2)) + 1} digits"


def check_json(what: str, value: Any, depth: int = 1) -> None:
    """ValueError naming ``what`` when ``value`` (JSON-able: dicts, lists, scalars) nests deeper
    than ``MAX_DEPTH`` or holds an int beyond the float range or a dict key with a lone
    surrogate. Strings may hold lone surrogates: JSON escapes them and reads them back."""
    if isinstance(value, (list, tuple, Mapping)):
        if depth > MAX_DEPTH:
            raise ValueError(
                f"{what} nests dicts and lists more than {MAX_DEPTH} levels deep (the limit)"
            )
        if isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and has_surrogate(key):
                    raise ValueError(f"{what}: key {key!r} {SURROGATE_HINT}")
                check_json(what, item, depth + 1)
        else:
            for item in value:
                if type(item) not in _PLAIN:  # a long list of floats costs one type check each
                    check_json(what, item, depth + 1)
    elif (
        type(value) is not bool
        and isinstance(value, int)
        and not (-_FLOAT_MAX <= value <= _FLOAT_MAX)
    ):
        raise ValueError(
            f"{what} holds the int {_digits(value)}, beyond the float range (about 1.8e308) that "
            "charts and the server hold; use str(value) to keep its digits"
        )


class DeferredTensor:
    """A CUDA scalar whose copy to the host was started but not waited for (no sync on log())."""

    __slots__ = ("event", "host", "key")

    def __init__(self, key: str, host: Any, event: Any) -> None:
        self.key, self.host, self.event = key, host, event


def convert(  # noqa: PLR0911, PLR0912
    key: str, value: Any, owner: Any = None
) -> tuple[str, Any] | DeferredTensor:
    """The column code and encodable value of one logged value; ``TypeError`` naming the key.

    Media (``Image``, ``Table``, charts, ...) and lists of media are stored through ``owner``'s
    media sink (the run: the bytes are written now) and become their references (JSON)."""
    kind = type(value)
    if kind is bool:
        return "?", value
    if kind is int:
        return ("q", value) if _I64_MIN <= value <= _I64_MAX else _big_int(key, value)
    if kind is float:
        return "d", value
    if kind is str:
        return _string(value)
    if value is None:
        return "j", None
    module = kind.__module__
    if module == "numpy":
        return _convert_numpy(key, value)
    if module.startswith("torch") and hasattr(value, "numel"):
        return _convert_tensor(key, value)
    if hasattr(value, "_media_ref") or (
        kind in (list, tuple) and value and hasattr(value[0], "_media_ref")
    ):
        return "j", _media_value(key, value, owner)
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return "j", to_json()
    if isinstance(value, bool):  # subclasses of the plain types (IntEnum, str enums, ...)
        return "?", bool(value)
    if isinstance(value, int):
        return convert(key, int(value))
    if isinstance(value, float):
        return "d", float(value)
    if isinstance(value, str):
        return _string(str.__str__(value))  # its text: str() of a str enum would be "Name.A"
    if isinstance(value, (list, tuple)):
        check_json(f"cannot log key {key!r}: the value", value, depth=2)
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError):
            pass
        else:
            return "j", list(value)
    raise TypeError(
        f"cannot log key {key!r}: values of type {kind.__qualname__} are not supported (use "
        "numbers, bools, strings, 0-d tensors or arrays, Histogram, or lists of numbers)"
    )


def _media_value(key: str, value: Any, owner: Any) -> Any:
    if owner is None:
        raise TypeError(f"cannot log key {key!r}: media are logged through a run's log()")
    from fulmen.track._media_store import sink_of

    sink = sink_of(owner)
    if isinstance(value, (list, tuple)):
        from fulmen.track._media import sequence_ref

        return sequence_ref(key, value, sink)
    return value._media_ref(sink)


def _convert_numpy(key: str, value: Any) -> tuple[str, Any]:
    dtype_kind = value.dtype.kind
    if getattr(value, "ndim", 0) == 0:
        if dtype_kind == "b":
            return "?", bool(value)
        if dtype_kind in "iu":
            return convert(key, int(value))  # type: ignore[return-value]
        if dtype_kind == "f":
            return ("f" if value.dtype.itemsize <= 4 else "d"), float(value)
        if dtype_kind in "US":
            return _string(str(value))
    elif dtype_kind in "biuf":
        return "j", Histogram(value).to_json()
    raise TypeError(f"cannot log key {key!r}: numpy value of dtype {value.dtype} is not supported")


def _convert_tensor(key: str, value: Any) -> tuple[str, Any] | DeferredTensor:
    import torch

    tensor = value.detach()
    if tensor.numel() != 1:
        return "j", Histogram(tensor).to_json()
    if tensor.is_cuda:
        # Reading a CUDA value on this thread would wait for every kernel queued before it (a GPU
        # sync). Start an asynchronous copy instead; the run writes the value when it lands.
        host = torch.empty((), dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor.reshape(()), non_blocking=True)
        event = torch.cuda.Event()  # type: ignore[no-untyped-call]
        event.record()
        return DeferredTensor(key, host, event)
    item = tensor.item()
    if isinstance(item, bool):
        return "?", item
    if isinstance(item, int):
        return convert(key, item)
    if isinstance(item, float):
        return (
            "f" if tensor.dtype in (torch.float32, torch.float16, torch.bfloat16) else "d"
        ), item
    raise TypeError(f"cannot log key {key!r}: tensor of dtype {tensor.dtype} is not supported")


def type_code(value: Any) -> str | None:
    """The code of ``value`` when its type alone decides it (fast-path types), else None."""
    kind = type(value)
    code = TYPE_CODES.get(kind)
    if code is not None:
        return code
    if kind.__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        dk = value.dtype.kind
        if dk == "b":
            code = "?"
        elif dk in "iu":
            code = "q"  # a uint64 beyond int64 fails to pack and takes the slow path
        elif dk == "f":
            code = "f" if value.dtype.itemsize <= 4 else "d"
        if code is not None:
            TYPE_CODES[kind] = code
    return code


def flatten(data: Mapping[Any, Any], prefix: str = "", depth: int = 1) -> list[tuple[Any, Any]]:
    """Nested mappings as ("a/b", value) pairs, in order; keys are checked by the caller.
    ValueError when the mappings nest more than ``MAX_DEPTH`` levels deep."""
    if depth > MAX_DEPTH:
        raise ValueError(
            f"log(): the dict nests more than {MAX_DEPTH} levels deep (the limit), at key "
            f"{prefix[:80]!r}..."
        )
    items: list[tuple[Any, Any]] = []
    for key, value in data.items():
        full = f"{prefix}{key}" if isinstance(key, str) else key
        if isinstance(value, Mapping) and isinstance(key, str):
            items += flatten(value, full + "/", depth + 1)
        else:
            items.append((full, value))
    return items


def jsonable(value: Any, depth: int = 1) -> Any:  # noqa: PLR0911
    """``value`` as something JSON can hold: containers kept, other objects as strings.
    ValueError when containers nest more than ``MAX_DEPTH`` levels deep (or hold themselves)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (Mapping, list, tuple)) and depth > MAX_DEPTH:
        raise ValueError(f"it nests dicts and lists more than {MAX_DEPTH} levels deep (the limit)")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        return jsonable(value.item())
    return str(value)


class Histogram:
    """A histogram as one loggable value: ``run.log({"w": Histogram(values)})``.

    ``sequence`` is any array-like of numbers (list, numpy array, tensor); or pass
    ``np_histogram=(counts, bin_edges)`` as ``numpy.histogram`` returns. NaN and infinite values
    are left out of the counts. ``num_bins`` is 1..512 (64 by default, as W&B).
    """

    MAX_BINS = 512

    def __init__(
        self,
        sequence: Sequence[float] | Any | None = None,
        np_histogram: tuple[Sequence[float], Sequence[float]] | None = None,
        num_bins: int = 64,
    ) -> None:
        if not isinstance(num_bins, int) or not 1 <= num_bins <= self.MAX_BINS:
            raise ValueError(f"num_bins must be an int in 1..{self.MAX_BINS}, got {num_bins!r}")
        if np_histogram is not None:
            counts, edges = np_histogram
            self.histogram = [float(c) for c in counts]
            self.bins = [float(e) for e in edges]
            if len(self.bins) != len(self.histogram) + 1:
                raise ValueError(
                    f"np_histogram needs len(bin_edges) == len(counts) + 1, got "
                    f"{len(self.bins)} and {len(self.histogram)}"
                )
            return
        if sequence is None:
            raise ValueError("Histogram needs a sequence or np_histogram")
        import numpy as np

        if hasattr(sequence, "detach"):  # a torch tensor
            sequence = sequence.detach().float().cpu().numpy()
        array: Any = np.asarray(sequence, dtype=np.float64).ravel()
        array = array[np.isfinite(array)]
        if array.size == 0:
            self.histogram = [0.0] * num_bins
            self.bins = [i / num_bins for i in range(num_bins + 1)]
            return
        counts, edges = np.histogram(array, bins=num_bins)  # type: ignore[assignment, unused-ignore]
        self.histogram = [float(c) for c in counts]
        self.bins = [float(e) for e in edges]

    def to_json(self) -> dict[str, Any]:
        """The form stored in the run log (a JSON column)."""
        return {"_type": "histogram", "values": self.histogram, "bins": self.bins}


def histogram_of_tensor(tensor: Any, num_bins: int = 64) -> dict[str, Any]:
    """A histogram computed on the tensor's device (one small copy to the host, a sync point)."""
    import torch

    flat = tensor.detach().float().reshape(-1)
    flat = flat[torch.isfinite(flat)]
    if flat.numel() == 0:
        return Histogram([], num_bins=num_bins).to_json()
    lo, hi = float(flat.min()), float(flat.max())  # host copies: a sync, once per log_freq
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(flat, bins=num_bins, min=lo, max=hi)
    step = (hi - lo) / num_bins
    edges = [lo + i * step for i in range(num_bins + 1)]
    return {"_type": "histogram", "values": counts.cpu().tolist(), "bins": edges}


def is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )
