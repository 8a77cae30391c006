"""The data of a report's panels, built on the server from the store's runs and history queries:
what a frozen run set keeps, and what an exported report embeds.

One run set's data (``runset_data``) is a snapshot in the shape ``FulmenPanels.apiSource``'s
``snapshot()`` writes and ``FulmenPanels.embeddedSource`` reads (``static/panels.js``), each part
as the API answers it::

    {"version": 1, "entity", "project",
     "runs": [run, ...],                            # GET .../runs (config and summary)
     "ranks": {run_id: i},                          # its place in the project (its colour)
     "history": [{"x", "answer": {"x", "buckets", "series"}}, ...],   # GET .../history, per x
     "values": {run_id: {key: {"key", "values"}}},  # GET .../history/values (histograms)
     "media": {run_id: {"media": [entry, ...]}},    # GET .../media (the last MEDIA_STEPS steps)
     "files": {"run_id/path": "data:...;base64,..."}}   # media files, in an export only

Every series has ``BUCKETS`` min/max buckets (a spike survives; a scalar or bar panel's min, max
and last are exact); y values are written with 6 significant digits (x with all of them: a
timestamp needs them).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from fulmen.server.store import HistoryQuery, NotFound, RunQuery, Store

VERSION = 1
BUCKETS = 300  # per series: about a bucket per pixel of a panel (panels.js asks as many)
MAX_RUNS = 500  # runs of one run set kept in a snapshot
MEDIA_STEPS = 8  # steps of a media key embedded per run (the last ones)
VALUES_LIMIT = 300  # rows of a histogram key embedded per run
MAX_FILES = 24 << 20  # bytes of media files embedded in one export


def _y(values: Any) -> list[float | None]:
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in values.tolist()]


def _x(values: Any) -> list[float | int | None]:
    out: list[float | int | None] = []
    for v in values.tolist():
        if not math.isfinite(v):
            out.append(None)
        elif v == int(v) and abs(v) < 2**53:
            out.append(int(v))
        else:
            out.append(v)
    return out


def compact(series: dict[str, Any]) -> dict[str, Any]:
    """One series of ``Store.history`` as JSON-ready lists (see the module docstring)."""
    return {
        "run": series["run"],
        "key": series["key"],
        "x": _x(series["x"]),
        "min": _y(series["min"]),
        "max": _y(series["max"]),
        "last": _y(series["last"]),
        "count": [int(c) for c in series["count"].tolist()],
    }


def runset_runs(store: Store, entity: str, runset: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of a live run set now: its project's runs matching its filters and query, only
    its selection when it has one, oldest first."""
    from fulmen.server._api_runs import _parse_filter

    query = RunQuery(
        filters=tuple(_parse_filter(f) for f in runset.get("filters") or ()),
        search=runset.get("query") or None,
        sort="created",
        limit=10_000,
    )
    runs = store.runs(entity, runset["project"], query).runs
    selection = runset.get("selection")
    if selection is not None:
        chosen = set(selection)
        runs = [r for r in runs if r["id"] in chosen]
    return runs[:MAX_RUNS]


def _needs(panels: list[dict[str, Any]]) -> dict[str, set[str]]:
    """x -> history keys the panels draw (scalar and bar panels read ``_step``, as panels.js)."""
    needs: dict[str, set[str]] = {}
    for p in panels:
        if p.get("kind") == "line":
            needs.setdefault(str(p.get("x") or "_step"), set()).update(p["y"])
        elif p.get("kind") in ("scalar", "bar"):
            needs.setdefault("_step", set()).add(str(p["metric"]).removeprefix("summary."))
    return needs


def _keys_of(panels: list[dict[str, Any]], kind: str) -> set[str]:
    return {str(p["key"]) for p in panels if p.get("kind") == kind}


def runset_data(
    store: Store,
    entity: str,
    project: str,
    runs: list[dict[str, Any]],
    panels: list[dict[str, Any]],
    have: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The snapshot of ``runs`` (of ``project``) for ``panels``; what ``have`` (an earlier
    snapshot of the same runs) already holds is kept and not read again."""
    from fulmen.server._api_media import media_keys

    old: dict[str, Any] = have or {}
    data: dict[str, Any] = {
        "version": VERSION,
        "entity": entity,
        "project": project,
        "runs": runs,
        "ranks": dict(old.get("ranks") or {}),
        "history": [dict(h) for h in old.get("history") or []],
        "values": {k: dict(v) for k, v in (old.get("values") or {}).items()},
        "media": {k: {"media": list(v["media"])} for k, v in (old.get("media") or {}).items()},
    }
    ids = [r["id"] for r in runs]
    if not data["ranks"] and ids:
        everyone = store.runs(entity, project, RunQuery(sort="created", limit=100_000, fields=()))
        order = {r["id"]: i for i, r in enumerate(everyone.runs)}
        data["ranks"] = {i: order[i] for i in ids if i in order}
    for x, keys in sorted(_needs(panels).items()):
        entry = next((h for h in data["history"] if h["x"] == x), None)
        held = {s["key"] for s in entry["answer"]["series"]} if entry else set()
        missing = sorted(keys - held)
        if not missing or not ids:
            continue
        series = []
        for run_id in ids:  # one run at a time: a run gone since is left out, not a failure
            one = HistoryQuery(runs=(run_id,), keys=tuple(missing), buckets=BUCKETS, x=x)
            try:
                series += [compact(s) for s in store.history(entity, project, one)]
            except NotFound:
                continue
        if entry is None:
            answer = {"x": x, "buckets": BUCKETS, "series": series}
            data["history"].append({"x": x, "answer": answer})
        else:
            entry["answer"] = {**entry["answer"], "series": entry["answer"]["series"] + series}
    histograms = _keys_of(panels, "histogram")
    media = _keys_of(panels, "media")
    for run in runs:
        run_id = run["id"]
        have_values = data["values"].setdefault(run_id, {})
        for key in sorted(histograms - set(have_values)):
            rows = store.values(entity, project, run_id, key, -math.inf, math.inf, VALUES_LIMIT)
            have_values[key] = {"key": key, "values": rows}
        entries = data["media"].setdefault(run_id, {"media": []})["media"]
        found = media_keys(run.get("summary") or {})
        for key in sorted(k for k in media - {m["key"] for m in entries} if k in found):
            rows = store.values(entity, project, run_id, key, -math.inf, math.inf, 100_000)
            rows = [r for r in rows if isinstance(r["value"], dict) and "_type" in r["value"]]
            rows = rows[-MEDIA_STEPS:]
            entries.append(
                {
                    "key": key,
                    "type": found[key],
                    "steps": [int(r["_step"]) for r in rows],
                    "values": [r["value"] for r in rows],
                }
            )
    data["values"] = {k: v for k, v in data["values"].items() if v}
    data["media"] = {k: v for k, v in data["media"].items() if v["media"]}
    return data


def media_paths(value: Any) -> Iterator[str]:
    """Every ``media/...`` path a media reference names (images, masks, table cells)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "path" and isinstance(v, str) and v.startswith("media/"):
                yield v
            else:
                yield from media_paths(v)
    elif isinstance(value, list):
        for v in value:
            yield from media_paths(v)


def embed_files(
    store: Store,
    read_blob: Callable[[str, int], bytes | None],
    entity: str,
    project: str,
    data: dict[str, Any],
    budget: list[int],
) -> None:
    """Add ``files`` to a snapshot: each media file its media entries name, as a ``data:`` URL
    (a table's JSON file, and the files its cells name, too), while ``budget[0]`` bytes last
    (``read_blob(digest, limit)``: the bytes, or None when there are more than ``limit``)."""
    from fulmen.server._api_media import CONTENT_TYPES

    files: dict[str, str] = {}
    for run_id, entries in data.get("media", {}).items():
        todo = [p for e in entries["media"] for v in e["values"] for p in media_paths(v)]
        seen: dict[str, str] = {}
        while todo:
            path = todo.pop(0)
            suffix = path[path.rfind(".") :].lower() if "." in path else ""
            if path in seen or suffix not in CONTENT_TYPES:
                continue
            try:
                blob = read_blob(store.file_digest(entity, project, run_id, path), budget[0])
            except (LookupError, OSError):  # NotFound, BlobMissing
                continue
            if blob is None:  # over what is left of the budget
                continue
            budget[0] -= len(blob)
            kind = CONTENT_TYPES[suffix].split(";")[0]
            seen[path] = f"data:{kind};base64,{base64.b64encode(blob).decode()}"
            if suffix == ".json":
                with contextlib.suppress(ValueError):
                    todo += list(media_paths(json.loads(blob)))
        files.update({f"{run_id}/{path}": url for path, url in seen.items()})
    data["files"] = files


def covers(data: dict[str, Any], panels: list[dict[str, Any]]) -> bool:
    """Whether the snapshot ``data`` holds everything ``panels`` draw."""
    held = {h["x"]: {s["key"] for s in h["answer"]["series"]} for h in data.get("history", [])}
    if any(not keys <= held.get(x, set()) for x, keys in _needs(panels).items()):
        return False
    runs = [r["id"] for r in data.get("runs", [])]
    histograms = _keys_of(panels, "histogram")
    if histograms and any(not histograms <= set(data.get("values", {}).get(r, {})) for r in runs):
        return False
    media = _keys_of(panels, "media")
    for run in data.get("runs", []):
        from fulmen.server._api_media import media_keys

        found = set(media_keys(run.get("summary") or {})) & media
        have = {m["key"] for m in data.get("media", {}).get(run["id"], {"media": []})["media"]}
        if not found <= have:
            return False
    return True
