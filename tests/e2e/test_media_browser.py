"""Media in a real browser: Debian's chromium driven by Playwright, against ``fulmen ui`` serving
run folders that real ``fulmen.track`` processes logged (images with masks and boxes at several
steps, a table with image cells, a confusion matrix, histograms, a progress bar on the console).
Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import ARTIFACTS, browser_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STEPS = 4
ROWS = 120  # table rows: more than one page
BIG = 10_000  # rows of the big table
LOGGER = f"""
import sys
import numpy as np
import fulmen.track as wandb
name, shift = sys.argv[1], int(sys.argv[2])
run = wandb.init(project="media", name=name, mode="offline")
labels = {{0: "road", 1: "car", 2: "sky"}}
for step in range({STEPS}):
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[..., 0] = 40 * step + shift
    mask = np.zeros((40, 60), np.uint8)
    mask[:10] = 2          # sky on top
    mask[20:30, 10 + step * 5 : 30 + step * 5] = 1   # a car that moves right
    boxes = {{"pred": {{"box_data": [
        {{"position": {{"minX": 0.1, "maxX": 0.4, "minY": 0.5, "maxY": 0.8}}, "class_id": 1,
          "box_caption": "car", "scores": {{"conf": 0.9}}}},
        {{"position": {{"middle": [30, 20], "width": 10, "height": 8}}, "domain": "pixel",
          "class_id": 1, "scores": {{"conf": 0.2}}}}],
        "class_labels": {{1: "car"}}}}}}
    img = wandb.Image(frame, caption=f"{{name}} step {{step}}", boxes=boxes,
                      masks={{"truth": {{"mask_data": mask, "class_labels": labels}}}})
    run.log({{"frames": [img, wandb.Image(frame[::-1].copy(), caption="flipped")],
             "loss": 1.0 / (step + 1),
             "weights": wandb.Histogram(np.random.default_rng(step).normal(step, 1, 500))}})
table = wandb.Table(columns=["id", "image", "iou"])
for i in range({ROWS}):
    m = np.zeros((8, 8), np.uint8)
    m[: i % 8] = 1
    cell = wandb.Image(np.full((8, 8, 3), i, np.uint8),
                       masks={{"pred": {{"mask_data": m, "class_labels": labels}}}})
    table.add_data(i, cell, ((i * 37) % 100) / 100)
run.log({{"ious": table,
         "cm": wandb.plot.confusion_matrix(y_true=[0, 1, 2, 2, 1], preds=[0, 1, 2, 1, 1],
                                           class_names=["road", "car", "sky"])}})
if name == "left":  # W&B's largest table: one JSON fetch, sorted and paged in the browser
    big = wandb.Table(columns=["n", "score", "word"],
                      data=[[i, (i * 7919) % {BIG}, f"w{{i % 97}}"] for i in range({BIG})])
    tone = np.sin(np.arange(4000) / 8000 * 2 * np.pi * 440).astype(np.float32)
    run.log({{"big": big, "sound": wandb.Audio(tone, sample_rate=8000, caption="a4"),
             "page": wandb.Html("<b>bold</b><script>parent.__xss = 1</script>")}})
for i in range(5):
    sys.stderr.write(f"\\repoch {{i}}: {{i * 20}}%|\\x1b[32m####\\x1b[0m|")
    sys.stderr.flush()
sys.stderr.write("\\repoch done\\x1b[K\\n")
print("plain line", flush=True)
run.finish()
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    browser_or_skip()
    root = tmp_path_factory.mktemp("media")
    env = {**os.environ, "FULMEN_DIR": str(root), "FULMEN_MODE": "offline"}
    env.pop("FULMEN_BASE_URL", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", LOGGER, name, shift], env=env)
        for name, shift in (("left", "0"), ("right", "100"))
    ]
    assert all(p.wait(180) == 0 for p in procs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "ui", str(root), "--poll", "0.5"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())
        assert match
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors


def _ids(ui: str) -> dict[str, str]:
    runs = _get(ui + "/api/v1/entities/local/projects/media/runs?limit=10")["runs"]
    return {r["name"]: r["id"] for r in runs}


def _open_run(ui: str, page: Any, name: str = "left") -> None:
    page.goto(f"{ui}/local/media/runs/{_ids(ui)[name]}")
    page.wait_for_selector("#media[data-ready='1']")


def _mask_pixels(page: Any) -> dict[str, Any]:
    """What the first mask canvas of ``frames`` holds: pixels per class (by colour), and its size
    on screen."""
    result: dict[str, Any] = page.evaluate(
        """() => {
            const c = document.querySelector('.media-panel[data-key="frames"] canvas.media-masks');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const colors = {}, palette = [0, 1, 2].map(FulmenMedia.classColor);
            for (let i = 0; i < d.length; i += 4) {
                if (!d[i + 3]) continue;
                // the class whose colour is nearest (alpha < 1 rounds the stored colour a little)
                let best = -1, dist = Infinity;
                palette.forEach((p, k) => {
                    const e = Math.abs(p[0] - d[i]) + Math.abs(p[1] - d[i + 1])
                        + Math.abs(p[2] - d[i + 2]);
                    if (e < dist) { dist = e; best = k; }
                });
                colors[best] = (colors[best] || 0) + 1;
            }
            const r = c.getBoundingClientRect();
            return {colors, width: c.width, height: c.height, shown: [r.width, r.height]};
        }"""
    )
    return result


def test_mask_overlay_is_on_screen_and_class_toggles_change_its_pixels(ui: str, page: Any) -> None:
    _open_run(ui, page)
    panel = page.locator('.media-panel[data-key="frames"]')
    assert panel.locator("figure.media-image").count() == 2  # two images at a step: a grid
    assert "left step 3" in panel.inner_text()  # the caption of the last step
    first = _mask_pixels(page)
    assert (first["width"], first["height"]) == (60, 40)
    assert first["shown"][0] > 100  # fit to width: drawn larger than 60 px, over the image
    road, car, sky = "0", "1", "2"
    assert first["colors"][road] == 40 * 60 - 10 * 60 - 10 * 20  # every pixel has a class
    assert first["colors"][sky] == 10 * 60
    assert first["colors"][car] == 10 * 20
    page.screenshot(path=str(ARTIFACTS / "media-run.png"), full_page=True)
    legend = panel.locator('.legend[data-mask="truth"]')
    assert "road" in legend.inner_text()
    assert "sky" in legend.inner_text()
    legend.locator('.class-toggle[data-class-id="2"] input').uncheck()
    page.wait_for_function(
        """() => document.querySelector('.media-panel[data-key="frames"] canvas.media-masks')
                   .dataset.drawn === String(40 * 60 - 10 * 60)"""
    )
    after = _mask_pixels(page)
    assert sky not in after["colors"]
    assert after["colors"][car] == 10 * 20
    panel.locator(".mask-opacity").fill("0")
    page.wait_for_function(
        """() => document.querySelector('.media-panel[data-key="frames"] canvas.media-masks')
                   .fulmen.opacity === 0"""
    )
    assert _mask_pixels(page)["colors"] == {}  # transparent: nothing over the image


def test_step_slider_changes_the_step(ui: str, page: Any) -> None:
    _open_run(ui, page)
    panel = page.locator('.media-panel[data-key="frames"]')
    assert panel.get_attribute("data-step") == str(STEPS - 1)
    panel.locator(".mask-opacity").fill("1")  # opaque: the canvas holds the palette colours
    panel.locator(".step-slider").fill("0")
    page.wait_for_function(
        """() => document.querySelector('.media-panel[data-key="frames"]').dataset.step === '0'"""
    )
    assert "left step 0" in panel.inner_text()
    page.wait_for_function(
        """() => { const c = document.querySelector(
            '.media-panel[data-key="frames"] canvas.media-masks');
            return c && c.fulmen && c.fulmen.opacity === 1; }"""
    )
    # at step 0 the car sits at columns 10..29: its pixels are there
    car_at = page.evaluate(
        """() => { const c = document.querySelector(
                '.media-panel[data-key="frames"] canvas.media-masks');
            const d = c.getContext('2d').getImageData(12, 25, 1, 1).data;
            return Array.from(d.slice(0, 3)).join(','); }"""
    )
    assert car_at == ",".join(str(v) for v in page.evaluate("() => FulmenMedia.classColor(1)"))


def test_boxes_are_drawn_with_a_class_toggle_and_a_score_slider(ui: str, page: Any) -> None:
    _open_run(ui, page)
    panel = page.locator('.media-panel[data-key="frames"]')
    drawn = "document.querySelector('.media-panel[data-key=\"frames\"] canvas.media-boxes')"
    assert page.evaluate(f"() => {drawn}.fulmen.drawn") == 2
    panel.locator('.score-slider[data-score="conf"]').fill("0.5")
    page.wait_for_function(f"() => {drawn}.fulmen.drawn === 1")
    panel.locator('.legend[data-boxes="pred"] .box-class-toggle[data-class-id="1"] input').uncheck()
    page.wait_for_function(f"() => {drawn}.fulmen.drawn === 0")


def test_table_with_image_cells_sorts_filters_and_pages(ui: str, page: Any) -> None:
    _open_run(ui, page)
    table = page.locator('.media-panel[data-key="ious"] .media-table')
    table.wait_for()
    assert table.get_attribute("data-rows") == str(ROWS)
    rows = table.locator("tbody tr")
    assert rows.count() == 50  # one page
    assert table.locator("tbody tr").first.locator("img").count() == 1  # an image cell
    assert table.locator("tbody tr").first.locator("canvas.media-masks").count() == 1
    table.locator('th[data-col="2"]').click()  # iou, ascending
    ious = [float(t) for t in table.locator("tbody tr td:nth-child(3)").all_inner_texts()]
    assert ious == sorted(ious)
    assert ious[0] == 0.0
    table.locator('th[data-col="2"]').click()  # descending
    ious = [float(t) for t in table.locator("tbody tr td:nth-child(3)").all_inner_texts()]
    assert ious == sorted(ious, reverse=True)
    assert ious[0] == 0.99
    table.locator("button", has_text="next").click()
    assert table.get_attribute("data-page") == "1"
    table.locator(".table-filter").fill("0.99")  # row 27 only (37 * 27 = 999)
    page.wait_for_function(
        """() => document.querySelector('.media-panel[data-key="ious"] .media-table')
                   .dataset.rows === '1'"""
    )
    assert table.locator("tbody tr").get_attribute("data-row") == "27"
    page.screenshot(path=str(ARTIFACTS / "media-table.png"), full_page=True)


def test_confusion_matrix_is_a_heatmap(ui: str, page: Any) -> None:
    _open_run(ui, page)
    chart = page.locator('.media-panel[data-key="cm"] .media-chart[data-preset="confusion_matrix"]')
    chart.wait_for()
    matrix = page.evaluate(
        """() => document.querySelector('.media-chart[data-preset="confusion_matrix"] canvas')
                   .fulmen"""
    )
    assert matrix["names"] == ["road", "car", "sky"]
    assert matrix["matrix"] == [[1, 0, 0], [0, 2, 0], [0, 1, 1]]


def test_histograms_have_step_and_value_axes(ui: str, page: Any) -> None:
    _open_run(ui, page)
    page.wait_for_selector('#histograms .panel[data-steps="4"]')
    drawn = page.evaluate("() => document.querySelector('#histograms .panel canvas').fulmen")
    assert drawn["steps"] == [0, 1, 2, 3]
    assert drawn["xTicks"][0] >= 0
    assert drawn["xTicks"][-1] <= 3
    assert drawn["lo"] < 0  # the values logged: normal(step, 1) at steps 0..3
    assert drawn["hi"] > 3


def test_console_shows_the_last_state_of_progress_bars(ui: str, page: Any) -> None:
    _open_run(ui, page)
    page.wait_for_function("() => document.getElementById('console').textContent.includes('plain')")
    text = page.locator("#console").inner_text()
    assert "epoch done" in text
    assert "epoch 3" not in text  # overwritten by the next state of the line
    assert "\x1b" not in text
    assert "[32m" not in text
    lines = page.evaluate(
        "() => FulmenMedia.terminal('a\\rbb\\n\\x1b[1A\\x1b[2K\\rup\\nx 10%\\r\\x1b[Kx 20%\\n')"
    )
    assert lines == ["up", "x 20%"]
    # two tqdm bars (position 0 and 1): the second is drawn below and the cursor moved back up
    bars = page.evaluate(
        "() => FulmenMedia.terminal('\\rA 1%\\n\\rB 1%\\x1b[A\\rA 2%\\n\\rB 2%\\x1b[A')"
    )
    assert bars == ["A 2%", "B 2%"]


def test_compare_page_shows_one_key_side_by_side(ui: str, page: Any) -> None:
    ids = _ids(ui)
    page.goto(f"{ui}/local/media/compare?run={ids['left']}&run={ids['right']}")
    page.wait_for_selector("#media[data-ready='1']")
    side = page.locator("#media-compare")
    assert side.get_attribute("data-key") == "big"  # the first media key, in name order
    assert side.locator(".media-run").count() == 2
    right = side.locator(f'.media-run[data-run="{ids["right"]}"]')
    assert "not logged" in right.inner_text()
    page.locator("#media-key").select_option("cm")
    page.wait_for_function(
        """() => document.querySelectorAll(
                   '#media-compare .media-chart[data-preset="confusion_matrix"] canvas').length
                 === 2"""
    )
    page.locator("#media-key").select_option("frames")
    page.wait_for_function(
        """() => document.getElementById('media-compare').dataset.key === 'frames'
                 && document.querySelectorAll('#media-compare figure.media-image').length === 4"""
    )
    assert "left step 3" in side.inner_text()
    assert "right step 3" in side.inner_text()
    side.locator(".step-slider").fill("1")
    page.wait_for_function("() => document.getElementById('media-compare').dataset.step === '1'")
    assert "left step 1" in side.inner_text()
    assert "right step 1" in side.inner_text()
    page.screenshot(path=str(ARTIFACTS / "media-compare.png"), full_page=True)


def test_a_synced_table_with_image_cells_renders(browser: Any, tmp_path: Path) -> None:
    from tests.e2e.test_server_e2e import Server, _sync
    from tests.server.test_media_sync import ROWS as TABLE_ROWS
    from tests.server.test_media_sync import log_offline

    server = Server(tmp_path / "server")
    server.start()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        _sync(tmp_path, server, str(log_offline(tmp_path)))
        page = context.new_page()
        page.goto(f"{server.url}/local/media/runs/tab00001")
        table = page.locator('.media-panel[data-key="ious"] .media-table[data-rows]')
        table.wait_for()
        assert table.get_attribute("data-rows") == str(TABLE_ROWS)
        page.wait_for_function(
            """n => { const imgs = [...document.querySelectorAll(
                          '.media-panel[data-key="ious"] tbody img')];
                      const masks = document.querySelectorAll(
                          '.media-panel[data-key="ious"] tbody canvas.media-masks[data-drawn]');
                      return imgs.length === n && masks.length === n
                             && imgs.every(i => i.complete && i.naturalWidth === 16); }""",
            arg=TABLE_ROWS,
        )
        # row i's mask has i + 1 rows of "car" (class 1) over 16 columns, the rest "road"
        drawn = page.evaluate(
            """() => [...document.querySelectorAll(
                   '.media-panel[data-key="ious"] tbody canvas.media-masks')]
                   .map(c => c.fulmen.drawn)"""
        )
        assert drawn == [12 * 16] * TABLE_ROWS
        page.screenshot(path=str(ARTIFACTS / "media-synced-table.png"), full_page=True)
    finally:
        context.close()
        assert server.proc is not None
        server.proc.terminate()
        server.proc.wait(10)


def test_a_table_of_ten_thousand_rows_sorts_and_pages(ui: str, page: Any) -> None:
    _open_run(ui, page)
    table = page.locator('.media-panel[data-key="big"] .media-table[data-rows]')
    table.wait_for()
    assert table.get_attribute("data-rows") == str(BIG)
    assert table.locator("tbody tr").count() == 50  # only a page is in the DOM
    table.locator('th[data-col="1"]').click()
    table.locator('th[data-col="1"]').click()  # score, descending
    first = table.locator("tbody tr").first.locator("td").all_inner_texts()
    assert first[1] == str(BIG - 1)  # 7919 is prime to 10,000: every score once
    assert "page 1 of 200" in table.inner_text()
    table.locator(".table-filter").fill("w96")
    page.wait_for_function(
        """() => document.querySelector('.media-panel[data-key="big"] .media-table')
                   .dataset.rows === String(Math.ceil(10000 / 97) - 1)"""
    )
    scores = [int(t) for t in table.locator("tbody tr td:nth-child(2)").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)  # the sort holds under the filter


def test_project_page_shows_the_charted_runs_media_side_by_side(ui: str, page: Any) -> None:
    page.goto(f"{ui}/local/media")
    page.wait_for_selector("#media[data-ready='1']")
    side = page.locator("#media-compare")
    assert side.locator(".media-run").count() == 2
    page.locator("#media-key").select_option("frames")
    page.wait_for_function(
        """() => document.getElementById('media-compare').dataset.key === 'frames'
                 && document.querySelectorAll('#media-compare canvas.media-masks[data-drawn]')
                        .length === 2"""
    )
    assert "left step 3" in side.inner_text()
    assert "right step 3" in side.inner_text()


def test_audio_plays_from_the_media_route_and_html_stays_sandboxed(ui: str, page: Any) -> None:
    _open_run(ui, page)
    audio = page.locator('.media-panel[data-key="sound"] audio')
    src = audio.get_attribute("src")
    assert src is not None
    assert "/media/files/media/audio/" in src
    assert "a4" in page.locator('.media-panel[data-key="sound"]').inner_text()
    kind = page.evaluate("src => fetch(src).then(r => r.headers.get('content-type'))", src)
    assert kind == "audio/wav"
    frame = page.locator('.media-panel[data-key="page"] iframe.media-html')
    assert frame.get_attribute("sandbox") == ""
    page.wait_for_function(
        """() => (document.querySelector('.media-panel[data-key="page"] iframe').srcdoc || '')
                   .includes('bold')"""
    )
    assert page.evaluate("() => window.__xss") is None
