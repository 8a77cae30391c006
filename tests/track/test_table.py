"""Table: W&B's constructor and methods, the column checks, the 10,000-row cap, media cells and
the INCREMENTAL mode, read back through the run's files."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fulmen import track
from fulmen.track import Api, Table


def _logged(key: str) -> tuple[Any, dict[str, Any]]:
    run = Api().runs()[-1]
    ref = [r for r in run.history(pandas=False) if key in r][-1][key]
    return run, ref


def _content(run: Any, ref: dict[str, Any]) -> dict[str, Any]:
    return json.loads(run.file(ref["path"]).read())  # type: ignore[no-any-return]


def test_columns_data_add_data_add_column_get_column() -> None:
    table = Table(columns=["id", "name"], data=[[1, "a"], [2, "b"]])
    table.add_data(3, "c")
    table.add_column("score", [0.5, None, 1.0])
    assert table.columns == ["id", "name", "score"]
    assert table.data == [[1, "a", 0.5], [2, "b", None], [3, "c", 1.0]]
    assert table.get_column("name") == ["a", "b", "c"]
    assert table.get_column("id", convert_to="numpy").tolist() == [1, 2, 3]
    assert Table(rows=[[1, 2]]).columns == ["Column_1", "Column_2"]


def test_logged_table_with_image_cells_reads_back() -> None:
    frame = np.zeros((8, 8, 3), np.uint8)
    mask = np.eye(8, dtype=np.uint8)
    table = Table(columns=["image", "iou", "ok"])
    table.add_data(track.Image(frame, masks={"gt": {"mask_data": mask}}), 0.75, True)
    table.add_data(None, 0.5, False)
    run = track.init(project="tables")
    run.log({"val/table": table})
    run.finish()
    api_run, ref = _logged("val/table")
    assert ref["_type"] == "table-file"
    assert (ref["ncols"], ref["nrows"], ref["log_mode"]) == (3, 2, "IMMUTABLE")
    content = _content(api_run, ref)
    assert content["columns"] == ["image", "iou", "ok"]
    cell = content["data"][0][0]
    assert cell["_type"] == "image-file"
    assert api_run.file(cell["path"]).size > 0
    assert api_run.file(cell["masks"]["gt"]["path"]).size > 0
    assert content["data"][1] == [None, 0.5, False]


class _Frame:
    """What Table reads of a pandas DataFrame (pandas is not a dependency): columns, values."""

    columns = ("a", "b")
    values = np.array([[1, "x"], [2, "y"]], dtype=object)


def test_dataframe() -> None:
    table = Table(dataframe=_Frame())
    assert table.columns == ["a", "b"]
    assert table.data == [[1, "x"], [2, "y"]]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Table(columns=["a"], data=[[1], ["x"]]), "column 'a' holds number values"),
        (lambda: Table(columns=["a"], data=[[1, 2]]), "the table has 1 columns, got 2 values"),
        (lambda: Table(columns=["a", "a"]), "column names must be unique"),
        (lambda: Table(columns=["a"], data=[[None]], optional=False), "is not optional"),
        (lambda: Table(columns=["a"], data=[["x"]], dtype=int), "column 'a' takes int"),
        (lambda: Table(log_mode="APPEND"), "log_mode must be one of"),
        (lambda: Table(columns=["a"]).get_column("b"), "no column 'b'"),
    ],
)
def test_bad_tables_name_the_problem(make: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_mixed_types_when_allowed() -> None:
    table = Table(columns=["a"], data=[[1], ["x"]], allow_mixed_types=True)
    assert table.get_column("a") == [1, "x"]


def test_ten_thousand_rows_is_the_cap() -> None:
    table = Table(columns=["i"], data=[[i] for i in range(Table.MAX_ROWS)])
    with pytest.raises(ValueError, match="at most 10000 rows"):
        table.add_data(1)


def test_incremental_tables_log_only_new_rows() -> None:
    table = Table(columns=["step", "loss"], log_mode="INCREMENTAL")
    run = track.init(project="tables")
    for step in range(3):
        for i in range(4):
            table.add_data(step, float(i))
        run.log({"t": table})
    run.finish()
    api_run = Api().runs()[-1]
    refs = [r["t"] for r in api_run.history(pandas=False)]
    assert [r["nrows"] for r in refs] == [4, 4, 4]
    assert [r["increment"] for r in refs] == [0, 1, 2]
    assert refs[2]["previous_increments"] == [refs[0]["path"], refs[1]["path"]]
    rows = [row for ref in refs for row in _content(api_run, ref)["data"]]
    assert rows == table.data


def test_incremental_tables_may_grow_past_the_cap() -> None:
    table = Table(columns=["i"], log_mode="INCREMENTAL")
    for i in range(Table.MAX_ROWS + 5):
        table.add_data(i)
    assert len(table.data) == Table.MAX_ROWS + 5
