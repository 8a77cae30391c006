"""A small run-log writer for the server's tests, straight from the grammar in
``fulmen.track.runlog`` (so the server is tested against the format, not against one client)."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path
from typing import Any

from fulmen.track import runlog as R

KIND = {name: code for code, name in R.KINDS.items()}


def _code(value: Any) -> str:
    if isinstance(value, bool):
        return "?"
    if isinstance(value, int):
        return "q"
    if isinstance(value, float):
        return "d"
    if isinstance(value, str):
        return "s"
    return "j"


class LogWriter:
    """Appends frames to a run log; each method writes one record and returns its sequence."""

    def __init__(self, path: Path | None = None, *, seq: int = 0) -> None:
        self.path = path
        self.seq = seq
        self.frames: list[bytes] = []
        self._schemas: dict[tuple[tuple[str, str], ...], int] = {}
        if path is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(R.header())

    def _emit(self, kind: str, body: bytes) -> int:
        frame = R.frame(KIND[kind], body)
        self.frames.append(frame)
        if self.path is not None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, frame)
            finally:
                os.close(fd)
        return self.seq

    def record(self, kind: str, obj: Any) -> int:
        self.seq += 1
        return self._emit(kind, R.json_payload(self.seq, obj))

    def run(self, run_id: str, project: str = "proj", **fields: Any) -> int:
        meta = {"id": run_id, "name": run_id, "project": project, "entity": None, "tags": []}
        meta.update({"resumed": False, "time": time.time(), "runtime": 0.0})
        meta.update(fields)
        return self.record("run", meta)

    def history(
        self, step: int, row: dict[str, Any], runtime: float = 0.0, *, patch: bool = False
    ) -> int:
        columns = tuple((k, _code(v)) for k, v in row.items())
        schema = self._schemas.get(columns)
        if schema is None:
            schema = self._schemas[columns] = len(self._schemas)
            self.record("schema", {"id": schema, "columns": [list(c) for c in columns]})
        self.seq += 1
        codes = "".join(c for _, c in columns)
        fixed = R.fixed_struct(codes)  # runtime_ms, then the fixed-size columns
        body = bytearray(R.SEQ.pack(self.seq))
        body += R.uvarint(schema) + R.svarint(self.seq - step)
        fixed_values = [
            v for (_, c), v in zip(columns, row.values(), strict=True) if c in R.FIXED_CODES
        ]
        body += fixed.pack(round(runtime * 1000), *fixed_values)
        for (_, c), v in zip(columns, row.values(), strict=True):
            if c not in R.FIXED_CODES:
                text = (v if c == "s" else json.dumps(v)).encode()
                body += R.uvarint(len(text)) + text
        return self._emit("patch" if patch else "history", bytes(body))

    def console(self, text: str, stream: int = 1) -> int:
        self.seq += 1
        return self._emit(
            "console", R.SEQ.pack(self.seq) + struct.pack("<B", stream) + text.encode()
        )

    def body(self) -> bytes:
        """Every frame written so far, as a client posts them."""
        return b"".join(self.frames)


# what a non-browser client adds to its writes when it sends no Content-Type of its own (the real
# client sends application/octet-stream or application/json): see fulmen.server._security
CLIENT_HEADERS = {"X-Fulmen-Client": "tests"}
