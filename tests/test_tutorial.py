"""docs/tutorial.md, run: every fenced ``bash`` and ``python`` block, in order, in one bash
session in a temporary folder (a ``python title="x.py"`` block is saved as ``x.py``, any other
python block is run). So the tutorial cannot drift from what works.

What the session changes, and only this: ``python``, ``fulmen`` and ``pip`` are this test's
interpreter (``pip install X`` checks that X is installed: the test has no network), the port is a
free one, and the grid is one seed per optimizer instead of three (tiny settings)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.M | re.S)
TINY = {"for seed in 0 1 2": "for seed in 0"}
SHIMS = """
python() { "$FULMEN_TEST_PYTHON" "$@"; }
fulmen() { "$FULMEN_TEST_PYTHON" -m fulmen "$@"; }
pip() {
  if [ "$1" = install ]; then
    shift
    for name in "$@"; do
      "$FULMEN_TEST_PYTHON" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$name"
    done
  else
    "$FULMEN_TEST_PYTHON" -m pip "$@"
  fi
}
"""


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, info after it, code) of each fenced block of ``text``, in order."""
    return [(m[1], m[2].strip(), m[3]) for m in BLOCK.finditer(text)]


def session(text: str, port: int) -> str:
    """The tutorial's blocks as one bash script."""
    lines = ["set -euo pipefail", SHIMS]
    for n, (lang, info, written) in enumerate(blocks(text)):
        code = written.replace("8765", str(port))
        for old, new in TINY.items():
            code = code.replace(old, new)
        title = re.search(r'title="([^"]+)"', info)
        lines.append(f"echo '--- block {n} ({lang} {info})'")
        if lang == "bash":
            lines.append(code)
        elif lang == "python" and title:
            lines.append(f"cat > {title[1]} <<'FULMEN_TUTORIAL_EOF'\n{code}FULMEN_TUTORIAL_EOF")
        elif lang == "python":
            lines.append(f"python - <<'FULMEN_TUTORIAL_EOF'\n{code}FULMEN_TUTORIAL_EOF")
        else:
            raise AssertionError(f"block {n}: a {lang!r} block; the tutorial runs bash and python")
    return "\n".join(lines) + "\n"


def test_the_blocks_are_found() -> None:
    found = blocks(TUTORIAL.read_text())
    assert [lang for lang, _, _ in found].count("bash") >= 5
    assert ("python", 'title="train.py"') in [(lang, info) for lang, info, _ in found]
    assert all(lang in ("bash", "python") for lang, _, _ in found)


def test_every_block_of_the_tutorial_runs(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_"))}
    env.update(
        FULMEN_TEST_PYTHON=sys.executable,
        FULMEN_SETTINGS_FILE=str(tmp_path / "settings"),
        FULMEN_CONSOLE="off",
        FULMEN_STATS_INTERVAL="0",
        FULMEN_DISABLE_GIT="true",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    )
    work = tmp_path / "work"
    work.mkdir()
    script = session(TUTORIAL.read_text(), port)
    log = tmp_path / "session.log"
    # its own process group: the server the tutorial starts in the background ends with it (and
    # output to a file: that server holds it open after bash has exited)
    with log.open("w") as sink:
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=work,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the group may be gone already
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    out = log.read_text()
    assert code == 0, out[-4000:]
    assert re.search(r"the report is at http://127\.0\.0\.1:\d+/local/supercharge/reports/\w+", out)
    assert re.search(r"^adam-seed0 adam 0\.\d+$", out, re.M), out[-4000:]
    assert re.search(r"^sgd-seed0 sgd 0\.\d+$", out, re.M)
    html = (work / "report.html").read_text()
    assert "Adam or SGD?" in html
    assert "Content-Security-Policy" in html
    assert (work / "report.md").read_text().startswith("# Adam or SGD?")
    assert len(list((work / "report_files").glob("chart-*.png"))) == 3  # 2 line plots, 1 bar
