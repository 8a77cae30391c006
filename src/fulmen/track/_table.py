"""``Table``: rows of numbers, strings, bools, None and media, logged as one value.

When logged, the table's content goes into a JSON file under ``media/table/`` (named by its
SHA-256: the same table logged twice is stored once) and the history row holds a reference,
``{"_type": "table-file", "path", "sha256", "size", "ncols", "nrows", "log_mode"}``. Media
cells are stored like logged media and appear in the file as their references. An
``INCREMENTAL`` table writes only the rows added since it was last logged, and its reference
lists the earlier increments (docs/run-log-format.md, "Tables").
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Sequence
from typing import Any

from fulmen.track._media import is_media
from fulmen.track._media_store import MediaSink, digest_name

MAX_ROWS = 10_000  # W&B's limit for a table logged to a run
LOG_MODES = ("IMMUTABLE", "MUTABLE", "INCREMENTAL")


def _kind(value: Any) -> str:
    """The type name of one cell, for the column-type check."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Number):
        return "number"
    if isinstance(value, str):
        return "str"
    if is_media(value):
        return type(value).__name__
    if type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        return _kind(value.item())
    return "json"


class Table:
    """A table for ``run.log``: ``Table(columns=["a", "b"], data=[[1, "x"], ...])``.

    ``rows`` is W&B's older name for ``data``; ``dataframe`` a pandas DataFrame. ``dtype`` (a type
    or one per column) and ``optional`` (None allowed, for all or per column) are checked for each
    row; a column holds one kind of value unless ``allow_mixed_types``. At most 10,000 rows per
    logged table; an ``INCREMENTAL`` table may grow past that, logged in parts.
    """

    MAX_ROWS = MAX_ROWS

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        data: Sequence[Sequence[Any]] | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
        dataframe: Any = None,
        dtype: Any = None,
        optional: bool | Sequence[bool] = True,
        allow_mixed_types: bool = False,
        log_mode: str = "IMMUTABLE",
    ) -> None:
        if log_mode not in LOG_MODES:
            raise ValueError(
                f"Table: log_mode must be one of {', '.join(LOG_MODES)}, got {log_mode!r}"
            )
        self.log_mode = log_mode
        self.allow_mixed_types = allow_mixed_types
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist()
        data = data if data is not None else rows
        if columns is None:
            width = len(data[0]) if data else 0
            columns = [f"Column_{i + 1}" for i in range(width)]
        if not isinstance(columns, Sequence) or isinstance(columns, str):
            raise TypeError(f"Table: columns must be a list of names, got {columns!r}")
        self.columns: list[str] = [str(c) for c in columns]
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"Table: column names must be unique, got {self.columns}")
        n = len(self.columns)
        self._dtypes = self._per_column(dtype, n, "dtype")
        self._optional = self._per_column(optional, n, "optional")
        self._kinds: list[str | None] = [None] * n
        self.data: list[list[Any]] = []
        self._logged = 0  # rows already written (INCREMENTAL)
        self._increments: list[str] = []
        for row in data or []:
            self.add_data(*row)

    @staticmethod
    def _per_column(value: Any, n: int, what: str) -> list[Any]:
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(f"Table: {what} has {len(value)} entries for {n} columns")
            return list(value)
        return [value] * n

    def _check(self, column: int, value: Any, row: int) -> None:
        name = self.columns[column]
        if value is None:
            if not self._optional[column]:
                raise TypeError(f"Table: column {name!r} is not optional, row {row} has None")
            return
        dtype = self._dtypes[column]
        if dtype is not None and not isinstance(value, dtype):
            raise TypeError(
                f"Table: column {name!r} takes {getattr(dtype, '__name__', dtype)}, row {row} has "
                f"{type(value).__name__} {value!r}"
            )
        kind = _kind(value)
        seen = self._kinds[column]
        if seen is None:
            self._kinds[column] = kind
        elif seen != kind and not self.allow_mixed_types:
            raise TypeError(
                f"Table: column {name!r} holds {seen} values, row {row} has a {kind} ({value!r}); "
                "pass allow_mixed_types=True to mix them"
            )

    def add_data(self, *data: Any) -> None:
        """Append one row (as many values as there are columns)."""
        if len(data) != len(self.columns):
            raise ValueError(
                f"Table.add_data: the table has {len(self.columns)} columns, got {len(data)} values"
            )
        if len(self.data) >= MAX_ROWS and self.log_mode != "INCREMENTAL":
            raise ValueError(
                f"Table: at most {MAX_ROWS} rows (W&B's limit); use log_mode='INCREMENTAL' and log "
                "the table as it grows"
            )
        for i, value in enumerate(data):
            self._check(i, value, len(self.data))
        self.data.append(list(data))

    def add_column(self, name: str, data: Sequence[Any], optional: bool = True) -> None:
        """Add a column of ``len(data)`` values (one per row)."""
        if name in self.columns:
            raise ValueError(f"Table.add_column: there is a column {name!r} already")
        if self.data and len(data) != len(self.data):
            raise ValueError(
                f"Table.add_column: {name!r} has {len(data)} values for {len(self.data)} rows"
            )
        self.columns.append(str(name))
        self._dtypes.append(None)
        self._optional.append(optional)
        self._kinds.append(None)
        for i, value in enumerate(data):
            self._check(len(self.columns) - 1, value, i)
        if not self.data:
            self.data = [[v] for v in data]
        else:
            for row, value in zip(self.data, data, strict=True):
                row.append(value)

    def get_column(self, name: str, convert_to: str | None = None) -> list[Any]:
        """The values of column ``name`` (``convert_to="numpy"``: a numpy array)."""
        if name not in self.columns:
            raise ValueError(f"Table: no column {name!r}; the columns are {self.columns}")
        i = self.columns.index(name)
        values = [row[i] for row in self.data]
        if convert_to == "numpy":
            import numpy as np

            return np.array(values)  # type: ignore[return-value]
        return values

    def get_index(self) -> list[int]:
        return list(range(len(self.data)))

    def _media_ref(self, sink: MediaSink) -> dict[str, Any]:
        start = self._logged if self.log_mode == "INCREMENTAL" else 0
        rows = self.data[start:]
        if len(rows) > MAX_ROWS:
            raise ValueError(
                f"Table: {len(rows)} rows; at most {MAX_ROWS} are logged at once (W&B's limit)"
            )
        body = {
            "columns": self.columns,
            "data": [[_cell(v, sink) for v in row] for row in rows],
        }
        data = json.dumps(body, separators=(",", ":"), allow_nan=True, default=str).encode()
        sha = hashlib.sha256(data).hexdigest()
        path = f"media/table/{digest_name(sha)}.table.json"
        sink.put_bytes(path, data, sha)
        ref: dict[str, Any] = {
            "_type": "table-file",
            "path": path,
            "sha256": sha,
            "size": len(data),
            "ncols": len(self.columns),
            "nrows": len(rows),
            "log_mode": self.log_mode,
        }
        if self.log_mode == "INCREMENTAL":
            ref["increment"] = len(self._increments)
            ref["previous_increments"] = list(self._increments)
            if rows:
                self._increments.append(path)
            self._logged = len(self.data)
        return ref

    def __repr__(self) -> str:
        return f"<Table {len(self.columns)} columns, {len(self.data)} rows>"


def _cell(value: Any, sink: MediaSink) -> Any:
    if is_media(value):
        return value._media_ref(sink)
    if type(value).__module__ == "numpy":
        return value.tolist()
    if isinstance(value, float) and value != value:  # noqa: PLR0124 (NaN)
        return None
    return value
