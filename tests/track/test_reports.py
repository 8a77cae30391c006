"""fulmen.track.reports against a real ``fulmen server`` on loopback: every block and panel saved
and loaded back the same, ids kept across saves (a frozen run set keeps its snapshot), clear
errors for bad arguments, and ``fulmen report export --format md`` drawing PNG charts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import fulmen.track.reports as wr
from tests.server.runlogs import CLIENT_HEADERS, LogWriter

pytestmark = pytest.mark.slow

PNG_1PX = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def _post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, method="POST", headers=CLIENT_HEADERS)
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path_factory.mktemp("server")
    cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(port), "--data", str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/api/v1/health", timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        for run_id, opt, scale in (("a1", "adam", 1.0), ("a2", "adam", 1.2), ("s1", "sgd", 2.0)):
            w = LogWriter()
            w.run(run_id, "rep", name=f"{opt}-{run_id}")
            w.record("config", {"optimizer": opt, "lr": scale / 10})
            for i in range(40):
                w.history(i, {"train/loss": scale / (i + 1), "val/acc": 1 - scale / (i + 3)})
            w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 2.0})
            _post(f"{url}/api/v1/entities/local/projects/rep/runs/{run_id}/records", w.body())
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def everything(tmp_path: Path) -> wr.Report:
    image = tmp_path / "plot.png"
    image.write_bytes(PNG_1PX)
    return wr.Report(
        project="rep",
        title="Adam or SGD?",
        description="three runs, two optimizers",
        blocks=[
            wr.H1("Loss"),
            wr.P("The loss $L$ of each optimizer, mean and min/max band."),
            wr.PanelGrid(
                runsets=[
                    wr.Runset(name="all", groupby="config.optimizer"),
                    wr.Runset(name="adam", filters="Config('optimizer') = 'adam'", frozen=True),
                ],
                panels=[
                    wr.LinePlot(
                        x="Step",
                        y="train/loss",
                        smoothing=0.5,
                        groupby="config.optimizer",
                        groupby_rangefunc="minmax",
                        layout=wr.Layout(w=6),
                    ),
                    wr.BarPlot(metrics=["val/acc"], agg="max", groupby=wr.Config("optimizer")),
                    wr.ScalarChart("val/acc", agg="max"),
                    wr.ScatterPlot(x=wr.Config("lr"), y="val/acc"),
                    wr.ParallelCoordinatesPlot(
                        columns=["config.lr", wr.ParallelCoordinatesPlotColumn("val/acc")]
                    ),
                    wr.RunTable(columns=["name", "config.optimizer", "summary.val/acc"]),
                    wr.RunComparer(diff_only=True),
                    wr.MediaBrowser("samples"),
                    wr.MarkdownPanel("notes $x^2$"),
                    {"kind": "histogram", "key": "gradients/w"},
                ],
            ),
            wr.CodeBlock("print('hi')"),
            wr.Image(image, caption="a pixel"),
        ],
    )


def test_a_report_saved_in_python_loads_back_the_same(server: str, tmp_path: Path) -> None:
    report = everything(tmp_path)
    url = report.save(base_url=server)
    assert url == f"{server}/local/rep/reports/{report.id}"
    loaded = wr.Report.from_url(url)
    assert loaded.to_spec() == report.to_spec()
    assert loaded.title == "Adam or SGD?"
    assert loaded.entity == "local"
    grid = loaded.blocks[2]
    assert isinstance(grid, wr.PanelGrid)
    assert [type(p).__name__ for p in grid.panels] == [
        "LinePlot",
        "BarPlot",
        "ScalarChart",
        "ScatterPlot",
        "ParallelCoordinatesPlot",
        "RunTable",
        "RunComparer",
        "MediaBrowser",
        "MarkdownPanel",
        "dict",
    ]
    line = grid.panels[0].to_spec()
    assert line == {
        "kind": "line",
        "x": "_step",
        "y": ["train/loss"],
        "layout": {"w": 6},
        "smoothing": {"type": "exponential", "amount": 0.5},
        "groupby": "config.optimizer",
        "band": "minmax",
    }
    assert grid.runsets[1].filters == ['config.optimizer="adam"']
    frozen_at = grid.runsets[1].frozen_at
    assert frozen_at is not None

    # saved again: same report, same run set ids (the frozen one keeps its snapshot)
    loaded.title = "Adam or SGD, revisited"
    assert loaded.save() == url
    again = wr.Report.from_url(url + "/edit")
    assert again.title == "Adam or SGD, revisited"
    assert again.blocks[2].runsets[1].frozen_at == frozen_at  # type: ignore[union-attr]
    with urllib.request.urlopen(
        f"{server}/api/v1/entities/local/projects/rep/reports/{report.id}/data"
    ) as r:
        data = json.loads(r.read())["data"]
    assert {r["id"] for r in data[grid.runsets[1].id]["runs"]} == {"a1", "a2"}
    assert {r["id"] for r in data[grid.runsets[0].id]["runs"]} == {"a1", "a2", "s1"}


def test_bad_arguments_name_the_argument_and_what_is_allowed() -> None:
    cases = [
        (lambda: wr.LinePlot(y=3), "LinePlot(y=...)"),
        (lambda: wr.LinePlot(y=["a"], smoothing_type="fancy"), "smoothing_type"),
        (lambda: wr.LinePlot(y="a", groupby="optimizer"), "'config.<key>'"),
        (lambda: wr.LinePlot(y="a", groupby_rangefunc="stderr"), "minmax, stddev, none"),
        (lambda: wr.BarPlot(metrics=["a", "b"]), "one metric per BarPlot"),
        (lambda: wr.ScalarChart("a", agg="median"), "last, min, max, mean"),
        (lambda: wr.MediaBrowser(["a", "b"]), "one media key"),
        (lambda: wr.ParallelCoordinatesPlot(columns=["config.lr"]), "two or more"),
        (lambda: wr.Runset(filters="lr is small"), "Config('<key>')"),
        (lambda: wr.PanelGrid(runsets=[]), "PanelGrid(runsets=...)"),
        (lambda: wr.Image("https://example.com/x.png"), "Image(url=...)"),
        (lambda: wr.Report(project="p", blocks=["text"]), "Report(blocks=...)"),
        (lambda: wr.Layout(w=13), "Layout(w=...)"),
    ]
    for make, expected in cases:
        with pytest.raises((TypeError, ValueError), match=None) as raised:
            make()
        assert expected in str(raised.value), (expected, str(raised.value))
    with pytest.raises(ValueError, match="reports/<id>"):
        wr.Report.from_url("http://127.0.0.1:1/local/rep")
    with pytest.raises(AttributeError, match="saved"):
        _ = wr.Report(project="p").url


def test_the_server_refusal_is_named(server: str) -> None:
    report = wr.Report(project="rep", blocks=[wr.PanelGrid(runsets=[wr.Runset(entity="bob")])])
    with pytest.raises(ValueError, match=r"blocks\[0\].runsets\[0\].entity"):
        report.save(base_url=server)


def test_export_as_markdown_draws_png_charts(server: str, tmp_path: Path) -> None:
    from PIL import Image as PILImage

    report = everything(tmp_path)
    url = report.save(base_url=server)
    out = tmp_path / "out" / "report.md"
    out.parent.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fulmen",
            "report",
            "export",
            url,
            "--format",
            "md",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    text = out.read_text()
    assert text.startswith("# Adam or SGD?")
    assert "| name | config.optimizer | summary.val/acc |" in text
    # the run comparer: a column per run; differences only, so the adam run set has no
    # optimizer row (the same in both runs) while the run set of all three has it
    assert "| | adam-a1 | adam-a2 | sgd-s1 |" in text
    assert "| config.optimizer | adam | adam | sgd |" in text
    assert "| config.lr | 0.1 | 0.12 | 0.2 |" in text
    assert "| | adam-a1 | adam-a2 |" in text.splitlines()
    assert "| config.optimizer | adam | adam |" not in text.splitlines()
    charts = sorted((tmp_path / "out" / "report_files").glob("chart-*.png"))
    assert len(charts) == 2 * 3  # line, bar, scalar for each of the two run sets
    for chart in charts:
        with PILImage.open(chart) as img:
            colours = img.convert("RGB").getcolors(100_000)
            assert colours is not None
            assert len(colours) > 5
    assert (tmp_path / "out" / "report_files" / "image-5.png").read_bytes() == PNG_1PX
