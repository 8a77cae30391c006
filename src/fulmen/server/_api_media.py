"""Routes of a run's media: which keys hold media (images, tables, charts, audio, video, HTML), at
which steps each was logged with its references, and the media files themselves, served with
their type so that the dashboard can draw them.

Where the answer comes from (no scan of the history on a request): the server's summary holds
each key's last value, so the keys whose last value is a media reference are the media keys (one
row read); each key's values are one indexed range of the store's non-scalar values
(``Store.values``: the ``(run, key, row)`` index), never the other rows. A key that was media
once and then overwritten by a number in the summary is no longer listed.

A media file is a run file (uploaded by the client under ``media/...``, stored once per content
in the blob store, a folder or a bucket): ``GET .../media/files/<path>`` answers it inline with its
content type, for ``<img>``, ``<audio>`` and ``<video>`` elements, where the run-files route
answers every file as an attachment (it always streams through the server, even where downloads
redirect to presigned URLs: the dashboard's content security policy allows only its own
origin). Only paths under ``media/`` with a known suffix are served here, the path is checked for
traversal as everywhere else, and an HTML file is served as plain text (the dashboard shows
it in a sandboxed frame): nothing a run uploads ever runs as a script on the server's origin.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from fulmen.server import _names
from fulmen.server._api_runs import RUN
from fulmen.server._deps import ResDep, RunDep, blob_response

router = APIRouter(tags=["runs"])

# the ``_type`` of every media reference the dashboard draws (histograms have their own panels)
MEDIA_TYPES = frozenset(
    {
        "image-file",
        "images/separated",
        "audio-file",
        "audio",
        "video-file",
        "videos",
        "html-file",
        "html",
        "table-file",
        "chart",
    }
)
MAX_KEYS = 200  # media keys answered per request (the summary lists them all)
# suffix -> content type of the media files served inline
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".json": "application/json",
    ".html": "text/plain; charset=utf-8",  # shown as text or in a sandboxed frame, never run
}


def media_keys(summary: dict[str, Any]) -> dict[str, str]:
    """The summary's media keys with the ``_type`` of their last value, in name order."""
    return {
        key: value["_type"]
        for key, value in sorted(summary.items())
        if isinstance(value, dict) and value.get("_type") in MEDIA_TYPES
    }


@router.get(RUN + "/media", summary="A run's media keys, their steps and references")
def media(
    res: ResDep,
    ref: RunDep,
    key: Annotated[list[str] | None, Query(max_length=MAX_KEYS)] = None,
    step: Annotated[int | None, Query(ge=0)] = None,
    refs: Annotated[bool, Query()] = True,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """``{"media": [{"key", "type", "steps": [...], "values": [...]}]}``: per media key the
    ``_step`` of each row that logged it (in row order) and, unless ``refs=false``, the reference
    logged at each of those steps (``values[i]`` at ``steps[i]``). ``key`` picks keys (all media
    keys when absent); ``step`` keeps only the references of the last row at or before that step
    (``steps`` is still complete), as a step slider shows them."""
    run = res.store.run(ref.entity, ref.project, ref.run_id)
    found = media_keys(run.get("summary") or {})
    wanted = [_names.key(k) for k in key] if key else list(found)[:MAX_KEYS]
    out = []
    for name in wanted:
        if name not in found:
            continue
        rows = res.store.values(
            ref.entity, ref.project, ref.run_id, name, -float("inf"), float("inf"), limit
        )
        rows = [r for r in rows if isinstance(r["value"], dict) and "_type" in r["value"]]
        steps = [int(r["_step"]) for r in rows]
        entry: dict[str, Any] = {"key": name, "type": found[name], "steps": steps}
        if refs:
            if step is not None:
                at = [r for r in rows if r["_step"] <= step][-1:]
                entry["values"] = [r["value"] for r in at]
                entry["value_steps"] = [int(r["_step"]) for r in at]
            else:
                entry["values"] = [r["value"] for r in rows]
        out.append(entry)
    return Response(orjson.dumps({"media": out}), media_type="application/json")


@router.get(RUN + "/media/files/{path:path}", summary="One media file, inline with its type")
def media_file(res: ResDep, ref: RunDep, path: str) -> Response:
    path = _names.relative_path(path)
    suffix = path[path.rfind(".") :].lower() if "." in path else ""
    if not path.startswith("media/") or suffix not in CONTENT_TYPES:
        allowed = ", ".join(sorted(CONTENT_TYPES))
        raise HTTPException(
            404, f"not a media file: {path!r} (media/... ending in one of {allowed})"
        )
    digest = res.store.file_digest(ref.entity, ref.project, ref.run_id, path)
    answer = blob_response(res, digest, path, content_type=CONTENT_TYPES[suffix], inline=True)
    # a stored file never runs: no scripts, no plugins, not even in a frame of its own
    answer.headers["content-security-policy"] = "default-src 'none'; sandbox"
    # the path names the content (media/<kind>/<sha256 prefix>.<suffix>): it never changes
    answer.headers["cache-control"] = "private, max-age=31536000, immutable"
    return answer
