"""What may be logged and how it is encoded (``fulmen.track._values``): key checks, the column
code of every kind of value, flattening, ``jsonable``, ``Histogram``; and the same values logged
and read back through a real run log."""

from __future__ import annotations

import enum
import math
from pathlib import Path

import numpy as np
import pytest

from fulmen import track
from fulmen.track import Api
from fulmen.track._values import (
    MAX_KEY_LENGTH,
    check_key,
    convert,
    flatten,
    histogram_of_tensor,
    is_number,
    jsonable,
    type_code,
)


def history(run_id: str) -> list[dict[str, object]]:
    rows = Api().run(run_id).history(pandas=False)
    assert isinstance(rows, list)
    return rows


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("loss", None),
        ("train/loss", None),
        ("k" * MAX_KEY_LENGTH, None),
        ("", "empty"),
        ("k" * (MAX_KEY_LENGTH + 1), f"{MAX_KEY_LENGTH + 1} characters long"),
        ("tab\there", "control character"),
        ("del\x7f", "control character"),
        ("_step", "reserved"),
        ("_runtime", "reserved"),
        ("_timestamp", "reserved"),
        (3, "is a int, not a string"),
        (None, "is a NoneType, not a string"),
    ],
)
def test_check_key_says_why_a_key_is_refused(key: object, why: str | None) -> None:
    got = check_key(key)
    if why is None:
        assert got is None
    else:
        assert got is not None
        assert why in got


class Color(enum.IntEnum):
    RED = 1


class Name(str, enum.Enum):
    A = "a"


@pytest.mark.parametrize(
    ("value", "code", "stored"),
    [
        (True, "?", True),
        (0, "q", 0),
        (2**63 - 1, "q", 2**63 - 1),
        (-(2**63), "q", -(2**63)),
        (2**63, "j", 2**63),  # beyond int64: a JSON number
        (1.5, "d", 1.5),
        (math.inf, "d", math.inf),
        ("héllo", "s", "héllo"),
        (None, "j", None),
        (np.float64(0.5), "d", 0.5),
        (np.float32(0.5), "f", 0.5),
        (np.float16(0.5), "f", 0.5),
        (np.int8(-3), "q", -3),
        (np.uint64(2**64 - 1), "j", 2**64 - 1),
        (np.bool_(False), "?", False),
        (np.str_("x"), "s", "x"),
        (Color.RED, "q", 1),
        (Name.A, "s", "a"),
        ([1, 2.5], "j", [1, 2.5]),
        ((1, 2), "j", [1, 2]),
    ],
)
def test_convert_gives_each_value_its_column_code(value: object, code: str, stored: object) -> None:
    assert convert("k", value) == (code, stored)


def test_convert_refuses_what_it_cannot_store_naming_the_key() -> None:
    with pytest.raises(TypeError, match=r"cannot log key 'obj': values of type object"):
        convert("obj", object())
    with pytest.raises(TypeError, match="cannot log key 'mixed'"):
        convert("mixed", [1, object()])
    with pytest.raises(TypeError, match="numpy value of dtype complex128"):
        convert("z", np.complex128(1j))


def test_arrays_and_objects_with_to_json_are_json_columns() -> None:
    code, hist = convert("a", np.arange(4))
    assert code == "j"
    assert hist["_type"] == "histogram"
    assert sum(hist["values"]) == 4
    assert convert("h", track.Histogram([1.0, 2.0], num_bins=2)) == (
        "j",
        {"_type": "histogram", "values": [1.0, 1.0], "bins": [1.0, 1.5, 2.0]},
    )


def test_type_code_is_known_only_when_the_type_alone_decides() -> None:
    assert [type_code(v) for v in (1.0, 1, True)] == ["d", "q", "?"]
    assert type_code(np.float32(1)) == "f"
    assert type_code(np.float64(1)) == "d"
    assert type_code(np.int32(1)) == "q"
    assert type_code(np.bool_(True)) == "?"
    # a string's, None's or an array's code is not cached by type: the fast path leaves them
    assert [type_code(v) for v in ("s", None, np.arange(2), [1])] == [None, None, None, None]


def test_flatten_joins_nested_keys_with_slashes_in_order() -> None:
    data = {"a": {"b": 1, "c": {"d": 2}}, "e": 3, 4: {"x": 5}}
    assert flatten(data) == [("a/b", 1), ("a/c/d", 2), ("e", 3), (4, {"x": 5})]
    assert flatten({"x": 1}, prefix="p/") == [("p/x", 1)]


def test_jsonable_keeps_containers_and_turns_other_objects_into_strings() -> None:
    value = {"n": np.int64(3), "f": np.float32(0.5), 7: (Path("/tmp/x"), None, True, Color.RED)}
    assert jsonable(value) == {"n": 3, "f": 0.5, "7": ["/tmp/x", None, True, 1]}
    assert type(jsonable(Color.RED)) is int


def test_is_number_leaves_out_bools_and_nan() -> None:
    assert [is_number(v) for v in (1, 1.5, math.inf)] == [True, True, True]
    assert [is_number(v) for v in (True, math.nan, "1", None)] == [False, False, False, False]


def test_histogram_of_a_tensor_is_counted_on_its_device() -> None:
    import torch

    hist = histogram_of_tensor(torch.tensor([0.0, 1.0, 1.0, math.nan, math.inf]), num_bins=2)
    assert hist == {"_type": "histogram", "values": [1.0, 2.0], "bins": [0.0, 0.5, 1.0]}
    flat = histogram_of_tensor(torch.full((3,), 2.0), num_bins=1)
    assert (flat["values"], flat["bins"]) == ([3.0], [1.5, 2.5])
    empty = histogram_of_tensor(torch.tensor([math.nan]), num_bins=2)
    assert empty["values"] == [0.0, 0.0]


def test_values_numpy_nested_strings_and_histograms() -> None:
    run = track.init()
    run.log(
        {
            "np64": np.float64(0.1),
            "np32": np.float32(0.5),
            "i": np.int64(7),
            "flag": np.bool_(True),
            "b": False,
            "big": 2**70,
            "text": "héllo",
            "none": None,
            "nested": {"a": {"b": 1.5}},
            "hist": track.Histogram([1, 2, 2, 3], num_bins=4),
            "array": np.arange(10),
        }
    )
    run.finish()
    (row,) = history(run.id)
    assert row["np64"] == 0.1
    assert row["np32"] == 0.5
    assert row["i"] == 7
    assert row["flag"] is True
    assert row["b"] is False
    assert row["big"] == 2**70
    assert row["text"] == "héllo"
    assert row["none"] is None
    assert row["nested/a/b"] == 1.5
    assert row["hist"] == {
        "_type": "histogram",
        "values": [1.0, 0.0, 2.0, 1.0],
        "bins": [1.0, 1.5, 2.0, 2.5, 3.0],
    }
    assert row["array"]["_type"] == "histogram"  # type: ignore[index]


def test_torch_scalars_are_converted() -> None:
    import torch

    run = track.init()
    run.log({"loss": torch.tensor(0.25), "n": torch.tensor(3), "t": torch.tensor([1.0, 2.0])})
    run.finish()
    (row,) = history(run.id)
    assert row["loss"] == 0.25
    assert row["n"] == 3
    assert row["t"]["_type"] == "histogram"  # type: ignore[index]


def test_histogram_arguments() -> None:
    hist = track.Histogram(np_histogram=([1, 2], [0.0, 0.5, 1.0]))
    assert hist.to_json() == {"_type": "histogram", "values": [1.0, 2.0], "bins": [0.0, 0.5, 1.0]}
    with pytest.raises(ValueError, match="num_bins"):
        track.Histogram([1.0], num_bins=0)
    with pytest.raises(ValueError, match="len"):
        track.Histogram(np_histogram=([1, 2], [0.0, 1.0]))
    with pytest.raises(ValueError, match="sequence or np_histogram"):
        track.Histogram()
    assert sum(track.Histogram([math.nan, math.inf, 1.0]).histogram) == 1
