"""A report as one file, to send to someone without a server.

``html_file``: one self-contained HTML page. The report's body as the server renders it
(``_report_pages.report_body``), the data of every panel grid (``_report_data`` snapshots, media
files as ``data:`` URLs), and every script and style the report page uses (uPlot, panels.js,
media.js, reports.js, the dashboard's CSS) inlined. Its Content-Security-Policy allows no request
to any host (``default-src 'none'``: only inline scripts and styles, ``data:`` and ``blob:``
images), so it opens from ``file://`` with working charts and can reach nothing.

``write_markdown``: the report as markdown, each line, bar and scalar panel drawn as a PNG next to
it by Pillow (imported only here), images written as files too.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fulmen.server._pages import STATIC, esc, static_text
from fulmen.server._report_pages import SCRIPTS, STYLES, report_body, report_title, shell

# what the exported file may load: its own inline code and data: URLs, nothing from any host
EXPORT_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'unsafe-inline'",
        "style-src 'unsafe-inline'",
        "img-src data: blob:",
        "media-src data: blob:",
        "font-src data:",
        "connect-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)


def _inline_script(code: str) -> str:
    # "</script" would end the element early wherever it stands (a string, a comment)
    return "<script>" + code.replace("</script", "<\\/script") + "</script>\n"


def filename(report: dict[str, Any]) -> str:
    """A file name for the export: the title's words, then the id."""
    words = re.sub(r"[^A-Za-z0-9]+", "-", str(report.get("title") or "report")).strip("-")
    return f"{(words or 'report')[:60].lower()}-{report['id']}.html"


def html_file(report: dict[str, Any], data: dict[str, Any]) -> str:
    """The self-contained HTML of ``report`` (as the API answers it) with ``data`` (run set id ->
    snapshot, media files inlined)."""
    styles = "".join(f"<style>{static_text(s)}</style>\n" for s in STYLES if s in STATIC)
    scripts = "".join(_inline_script(static_text(s)) for s in SCRIPTS)
    head = f'<meta http-equiv="Content-Security-Policy" content="{esc(EXPORT_CSP)}">\n'
    page = {
        "entity": report["entity"],
        "project": report["project"],
        "report": report,
        "snapshots": data,
        "embedded": True,
    }
    body = f'<article class="report">{report_body(report)}</article>'
    body += (
        '<p class="muted export-note">Exported from fulmen: this file holds the report\'s data.</p>'
    )
    title = report_title(report)
    crumbs = [(report["entity"], ""), (report["project"], ""), (title, "")]
    return shell(title, crumbs, body, page, "report", head=head, styles=styles, scripts=scripts)


def inline_images(
    report: dict[str, Any], read_file: Callable[[str], tuple[bytes, str] | None]
) -> None:
    """Replace each image block's server path by a ``data:`` URL (``read_file(url)`` answers its
    bytes and content type, or None: the path is then kept)."""
    for block in report["blocks"]:
        if block["kind"] == "image" and not block["url"].startswith("data:"):
            found = read_file(block["url"])
            if found is not None:
                blob, kind = found
                block["url"] = f"data:{kind};base64,{base64.b64encode(blob).decode()}"


# -------------------------------------------------------------------------------- markdown

WIDTH, HEIGHT = 720, 360
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
)


def _color(run_id: str) -> str:
    h = 2166136261
    for ch in run_id:
        h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
    return PALETTE[h % len(PALETTE)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def draw_lines(title: str, lines: list[tuple[str, str, list[float], list[float]]]) -> bytes:
    """A PNG line chart: ``lines`` are (label, colour, xs, ys); axes with min/max ticks and a
    legend."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    d = ImageDraw.Draw(img)
    left, top, right, bottom = 64, 28, WIDTH - 170, HEIGHT - 32
    d.text((left, 6), title[:80], fill="#222")
    points = [
        (x, y)
        for _, _, xs, ys in lines
        for x, y in zip(xs, ys, strict=False)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    d.rectangle((left, top, right, bottom), outline="#bbb")
    if not points:
        d.text((left + 10, top + 10), "no data", fill="#888")
    else:
        x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
        x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

        def at(x: float, y: float) -> tuple[float, float]:
            return (
                left + (x - x0) / (x1 - x0) * (right - left),
                bottom - (y - y0) / (y1 - y0) * (bottom - top),
            )

        for _label, colour, xs, ys in lines:
            pts = [
                at(x, y)
                for x, y in zip(xs, ys, strict=False)
                if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
            ]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            elif pts:
                d.ellipse((pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2), fill=colour)
        d.text((4, top), _fmt(y1), fill="#555")
        d.text((4, bottom - 10), _fmt(y0), fill="#555")
        d.text((left, bottom + 6), _fmt(x0), fill="#555")
        d.text((right - 40, bottom + 6), _fmt(x1), fill="#555")
    for i, (label, colour, _, _) in enumerate(lines[:20]):
        y = top + i * 16
        d.rectangle((right + 10, y + 3, right + 20, y + 13), fill=colour)
        d.text((right + 26, y + 2), label[:22], fill="#222")
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return out.getvalue()


def draw_bars(title: str, bars: list[tuple[str, str, float]]) -> bytes:
    """A PNG horizontal bar chart: ``bars`` are (label, colour, value)."""
    import io

    from PIL import Image, ImageDraw

    height = max(HEIGHT // 2, 40 + 22 * len(bars))
    img = Image.new("RGB", (WIDTH, height), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 6), title[:80], fill="#222")
    values = [v for _, _, v in bars if math.isfinite(v)]
    hi = max([0.0, *values]) or 1.0
    lo = min([0.0, *values])
    left, right = 180, WIDTH - 80
    for i, (label, colour, value) in enumerate(bars):
        y = 30 + i * 22
        d.text((10, y + 3), label[:26], fill="#222")
        if math.isfinite(value):
            zero = left + (0 - lo) / (hi - lo) * (right - left)
            end = left + (value - lo) / (hi - lo) * (right - left)
            d.rectangle((min(zero, end), y, max(zero, end), y + 16), fill=colour)
            d.text((max(zero, end) + 6, y + 3), _fmt(value), fill="#222")
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return out.getvalue()


def _series(data: dict[str, Any], x: str, key: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for h in data.get("history", []):
        if h["x"] != x:
            continue
        for s in h["answer"]["series"]:
            if s["key"] == key and s["run"] not in found:
                found[s["run"]] = s
    return found


def _agg(series: dict[str, Any] | None, run: dict[str, Any], metric: str, agg: str) -> float:
    if agg == "last" or series is None:
        value = (run.get("summary") or {}).get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if series is None:
            return math.nan
    assert series is not None
    last = [v for v in series["last"] if v is not None]
    if agg == "min":
        mins = [v for v in series["min"] if v is not None]
        return min(mins) if mins else math.nan
    if agg == "max":
        maxs = [v for v in series["max"] if v is not None]
        return max(maxs) if maxs else math.nan
    if agg == "mean":
        total = sum(
            v * c for v, c in zip(series["last"], series["count"], strict=False) if v is not None
        )
        n = sum(c for v, c in zip(series["last"], series["count"], strict=False) if v is not None)
        return total / n if n else math.nan
    return last[-1] if last else math.nan


def _group_value(run: dict[str, Any], by: str | None) -> str:
    if not by:
        return str(run.get("name") or run["id"])
    if by == "group":
        return str(run.get("group") or "(none)")
    value: Any = run.get("config") or {}
    for part in by.removeprefix("config.").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "(none)" if value is None else str(value)


Line = tuple[str, str, list[Any], list[Any]]  # label, colour, xs, ys


def _run_lines(runs: list[dict[str, Any]], found: dict[str, dict[str, Any]]) -> list[Line]:
    """One line per run (its bucket's last values)."""
    return [
        (str(run.get("name") or run["id"]), _color(run["id"]), found[run["id"]]["x"],
         found[run["id"]]["last"])
        for run in runs
        if run["id"] in found
    ]  # fmt: skip


def _group_lines(
    runs: list[dict[str, Any]], found: dict[str, dict[str, Any]], by: str, suffix: str
) -> list[Line]:
    """One line per group: the mean of its runs' last values at each x."""
    groups: dict[str, dict[float, list[float]]] = {}
    for run in runs:
        s = found.get(run["id"])
        if s is None:
            continue
        points = groups.setdefault(_group_value(run, by), {})
        for xv, yv in zip(s["x"], s["last"], strict=False):
            if xv is not None and yv is not None:
                points.setdefault(xv, []).append(yv)
    out: list[Line] = []
    for name, points in sorted(groups.items()):
        xs = sorted(points)
        ys = [sum(points[v]) / len(points[v]) for v in xs]
        out.append((f"{name}{suffix}", _color(f"group:{name}"), xs, ys))
    return out


def _bars(panel: dict[str, Any], data: dict[str, Any]) -> list[tuple[str, str, float]]:
    """A bar or scalar panel's bars: one per run, or per group (the mean of its runs)."""
    runs = data.get("runs", [])
    metric, agg = str(panel["metric"]), str(panel.get("agg", "last"))
    found = _series(data, "_step", metric.removeprefix("summary."))
    values = [(run, _agg(found.get(run["id"]), run, metric, agg)) for run in runs]
    by = panel.get("groupby") if panel.get("kind") == "bar" else None
    if panel.get("kind") == "bar" and not by:
        return [(str(run.get("name") or run["id"]), _color(run["id"]), v) for run, v in values]
    groups: dict[str, list[float]] = {}
    for run, v in values:
        if math.isfinite(v):
            groups.setdefault(_group_value(run, by) if by else "all runs", []).append(v)
    return [
        (name, _color(f"group:{name}"), sum(vs) / len(vs)) for name, vs in sorted(groups.items())
    ]


def panel_png(panel: dict[str, Any], data: dict[str, Any], groupby: str | None) -> bytes | None:
    """A PNG of a line, bar or scalar panel from a snapshot; None for the other kinds."""
    kind = panel.get("kind")
    if kind == "line":
        x, by = str(panel.get("x") or "_step"), panel.get("groupby") or groupby
        lines: list[Line] = []
        for key in panel["y"]:
            found = _series(data, x, key)
            suffix = "" if len(panel["y"]) == 1 else f" {key}"
            runs = data.get("runs", [])
            lines += _group_lines(runs, found, by, suffix) if by else _run_lines(runs, found)
        return draw_lines(str(panel.get("title") or ", ".join(panel["y"])), lines)
    if kind in ("bar", "scalar"):
        title = f"{panel['metric']} ({panel.get('agg', 'last')})"
        return draw_bars(str(panel.get("title") or title), _bars(panel, data))
    return None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = _fmt(value)
    elif isinstance(value, dict) and "_type" in value:
        text = f"({value['_type']})"
    else:
        text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _dig(run: dict[str, Any], column: str) -> Any:
    head, _, rest = column.partition(".")
    if head in ("config", "summary") and rest:
        value: Any = run.get(head) or {}
        for part in rest.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    return run.get("name") or run["id"] if column == "name" else run.get(column)


def _table(panel: dict[str, Any], data: dict[str, Any]) -> list[str]:
    columns = panel.get("columns") or ["name", "state"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for run in data.get("runs", []):
        rows.append("| " + " | ".join(_cell(_dig(run, c)) for c in columns) + " |")
    return [*rows, ""]


def _leaves(obj: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """A config or summary object's leaf paths, as the run comparer of panels.js walks them."""
    for key, value in (obj if isinstance(obj, dict) else {}).items():
        if not prefix and key.startswith("_"):
            continue
        if isinstance(value, dict) and value and "_type" not in value:
            _leaves(value, f"{prefix}{key}.", out)
        else:
            out[prefix + key] = value
    return out


def _compare(panel: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """The run comparer as a markdown table: a column per run, a row per run field, config path
    and summary metric (only those that differ with ``diff_only``)."""
    runs = data.get("runs", [])[:50]
    rows: list[tuple[str, list[Any]]] = [
        (f, [r.get(f) for r in runs]) for f in ("state", "runtime")
    ]
    for part in ("config", "summary"):
        flat = [_leaves(r.get(part), "", {}) for r in runs]
        for name in sorted({k for f in flat for k in f}):
            rows.append((f"{part}.{name}", [f.get(name) for f in flat]))
    lines = ["| | " + " | ".join(_cell(r.get("name") or r["id"]) for r in runs) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    for name, values in rows:
        same = all(json.dumps(v, sort_keys=True) == json.dumps(values[0], sort_keys=True)
                   for v in values)  # fmt: skip
        if not (panel.get("diff_only") and same):
            lines.append(f"| {name} | " + " | ".join(_cell(v) for v in values) + " |")
    return [*lines, ""]


def write_markdown(payload: dict[str, Any], out: Path) -> list[Path]:
    """Write the report of ``payload`` (``GET .../reports/{id}/data``'s answer) as markdown to
    ``out``, its charts and images as PNG files in ``<out stem>_files/``; the files written."""
    report, snapshots = payload["report"], payload["data"]
    assets = out.with_name(out.stem + "_files")
    written: list[Path] = []

    def asset(name: str, blob: bytes) -> str:
        assets.mkdir(parents=True, exist_ok=True)
        path = assets / name
        path.write_bytes(blob)
        written.append(path)
        return f"{assets.name}/{name}"

    def grid(n: int, block: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        for runset in block["runsets"]:
            data = snapshots.get(runset["id"]) or {}
            frozen = " (frozen)" if runset.get("frozen") else ""
            lines += [f"*{runset['name']}{frozen}: {len(data.get('runs', []))} runs*", ""]
            for i, panel in enumerate(block["panels"], 1):
                png = panel_png(panel, data, (runset.get("groupby") or [None])[0])
                title = str(panel.get("title") or panel.get("kind"))
                if png is not None:
                    name = f"chart-{n}-{runset['id']}-{i}.png"
                    lines += [f"![{title}]({asset(name, png)})", ""]
                elif panel.get("kind") == "table":
                    lines += _compare(panel, data) if panel.get("compare") else _table(panel, data)
                elif panel.get("kind") == "markdown":
                    lines += [str(panel.get("text") or ""), ""]
                else:
                    lines += [f"*{title}: a {panel.get('kind')} panel (in the HTML export)*", ""]
        return lines

    lines = [f"# {report_title(report)}", ""]
    if report.get("description"):
        lines += [str(report["description"]), ""]
    for n, block in enumerate(report["blocks"], 1):
        if block["kind"] == "markdown":
            lines += [block["text"], ""]
        elif block["kind"] == "image":
            url, caption = block["url"], block.get("caption") or ""
            match = re.match(r"data:image/(png|jpeg|gif|webp);base64,(.*)", url, re.S)
            if match:
                suffix = {"jpeg": "jpg"}.get(match[1], match[1])
                url = asset(f"image-{n}.{suffix}", base64.b64decode(match[2]))
            lines += [f"![{caption}]({url})", ""]
        elif block["kind"] == "panels":
            lines += grid(n, block)
    out.write_text("\n".join(lines), encoding="utf-8")
    return [out, *written]
