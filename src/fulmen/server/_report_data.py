"""The data of a report's panels, built on the server from the store's runs and history queries:
what a frozen run set keeps, and what an exported report embeds.

One run set's data (``runset_data``) is a snapshot in the shape the page's embedded source reads
(``static/reports.js``, ``embeddedSource``), each part as the API answers it::

    {"version": 1,
     "runs": [run, ...],                                  # GET .../runs (config and summary)
     "history": [{"x", "buckets", "series": [...]}, ...], # GET .../history, one per x and size
     "values": {run_id: {key: [row, ...]}},               # GET .../history/values (histograms)
     "media": {run_id: [{"key", "type", "steps", "values"}]},  # GET .../media (the last steps)
     "files": {run_id: {path: "data:...;base64,..."}}}    # media files, in an export only

Line panels get ``LINE_BUCKETS`` min/max buckets per series (a spike survives), scalar and bar
panels ``SMALL_BUCKETS`` (their min, max and last are exact: buckets keep them); y values are
written with 7 significant digits (x with all of them: a timestamp needs them).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from fulmen.server.store import HistoryQuery, NotFound, RunQuery, Store

VERSION = 1
LINE_BUCKETS = 400
SMALL_BUCKETS = 64
MAX_RUNS = 500  # runs of one run set kept in a snapshot
MEDIA_STEPS = 8  # steps of a media key embedded per run (the last ones)
VALUES_LIMIT = 300  # rows of a histogram key embedded per run
MAX_FILES = 24 << 20  # bytes of media files embedded in one export


def _y(values: Any) -> list[float | None]:
    return [float(f"{v:.7g}") if math.isfinite(v) else None for v in values.tolist()]


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


def _needs(panels: list[dict[str, Any]]) -> dict[tuple[str, int], set[str]]:
    """(x, buckets) -> history keys the panels draw."""
    needs: dict[tuple[str, int], set[str]] = {}
    for p in panels:
        if p.get("kind") == "line":
            needs.setdefault((str(p.get("x") or "_step"), LINE_BUCKETS), set()).update(p["y"])
        elif p.get("kind") in ("scalar", "bar"):
            needs.setdefault(("_step", SMALL_BUCKETS), set()).add(p["metric"])
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

    data: dict[str, Any] = have or {}
    data = {
        "version": VERSION,
        "runs": runs,
        "history": list(data.get("history") or []),
        "values": dict(data.get("values") or {}),
        "media": dict(data.get("media") or {}),
    }
    ids = [r["id"] for r in runs]
    held = {(h["x"], h["buckets"]): {s["key"] for s in h["series"]} for h in data["history"]}
    for (x, buckets), keys in sorted(_needs(panels).items()):
        missing = sorted(keys - held.get((x, buckets), set()))
        if not missing or not ids:
            continue
        query = HistoryQuery(runs=tuple(ids), keys=tuple(missing), buckets=buckets, x=x)
        try:
            series = [compact(s) for s in store.history(entity, project, query)]
        except NotFound:  # a run gone since: each run on its own
            series = []
            for run_id in ids:
                one = HistoryQuery(runs=(run_id,), keys=tuple(missing), buckets=buckets, x=x)
                try:
                    series += [compact(s) for s in store.history(entity, project, one)]
                except NotFound:
                    continue
        entry = next((h for h in data["history"] if (h["x"], h["buckets"]) == (x, buckets)), None)
        if entry is None:
            data["history"].append({"x": x, "buckets": buckets, "series": series})
        else:
            entry["series"] = entry["series"] + series
    histograms = _keys_of(panels, "histogram")
    media = _keys_of(panels, "media")
    for run in runs:
        run_id = run["id"]
        have_values = data["values"].setdefault(run_id, {})
        for key in sorted(histograms - set(have_values)):
            rows = store.values(entity, project, run_id, key, -math.inf, math.inf, VALUES_LIMIT)
            have_values[key] = rows
        have_media = {m["key"] for m in data["media"].get(run_id, [])}
        found = media_keys(run.get("summary") or {})
        wanted = sorted(k for k in media - have_media if k in found)
        entries = list(data["media"].get(run_id, []))
        for key in wanted:
            rows = store.values(entity, project, run_id, key, -math.inf, math.inf, 100_000)
            rows = [r for r in rows if isinstance(r["value"], dict) and "_type" in r["value"]]
            rows = rows[-MEDIA_STEPS:]
            entries.append({
                "key": key,
                "type": found[key],
                "steps": [int(r["_step"]) for r in rows],
                "values": [r["value"] for r in rows],
            })  # fmt: skip
        if entries:
            data["media"][run_id] = entries
    data["values"] = {k: v for k, v in data["values"].items() if v}
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
    read_blob: Callable[[str], bytes],
    entity: str,
    project: str,
    data: dict[str, Any],
    budget: list[int],
) -> None:
    """Add ``files`` to a snapshot: each media file its media entries name, as a ``data:`` URL
    (a table's JSON file, and the files its cells name, too), while ``budget[0]`` bytes last."""
    from fulmen.server._api_media import CONTENT_TYPES

    files: dict[str, dict[str, str]] = {}
    for run_id, entries in data.get("media", {}).items():
        todo = [p for e in entries for v in e["values"] for p in media_paths(v)]
        seen: dict[str, str] = {}
        while todo:
            path = todo.pop(0)
            suffix = path[path.rfind(".") :].lower() if "." in path else ""
            if path in seen or suffix not in CONTENT_TYPES:
                continue
            try:
                blob = read_blob(store.file_digest(entity, project, run_id, path))
            except (NotFound, OSError):
                continue
            if len(blob) > budget[0]:
                continue
            budget[0] -= len(blob)
            kind = CONTENT_TYPES[suffix].split(";")[0]
            seen[path] = f"data:{kind};base64,{base64.b64encode(blob).decode()}"
            if suffix == ".json":
                try:
                    todo += list(media_paths(json.loads(blob)))
                except ValueError:
                    pass
        if seen:
            files[run_id] = seen
    data["files"] = files


def covers(data: dict[str, Any], panels: list[dict[str, Any]]) -> bool:
    """Whether the snapshot ``data`` holds everything ``panels`` draw."""
    held = {(h["x"], h["buckets"]): {s["key"] for s in h["series"]} for h in data.get("history", [])}
    if any(not keys <= held.get(need, set()) for need, keys in _needs(panels).items()):
        return False
    runs = [r["id"] for r in data.get("runs", [])]
    histograms = _keys_of(panels, "histogram")
    if histograms and any(not histograms <= set(data.get("values", {}).get(r, {})) for r in runs):
        return False
    media = _keys_of(panels, "media")
    for run in data.get("runs", []):
        from fulmen.server._api_media import media_keys

        found = set(media_keys(run.get("summary") or {})) & media
        have = {m["key"] for m in data.get("media", {}).get(run["id"], [])}
        if not found <= have:
            return False
    return True
