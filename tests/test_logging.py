"""fulmen's loggers: quiet by default, printed on request (FULMEN_LOG_LEVEL, --log-level)."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

from fulmen.cli import cli

EMIT = (
    "import logging, fulmen; "
    "logging.getLogger('fulmen.track').warning('uploader gave up'); "
    "logging.getLogger('fulmen.server').debug('ingest detail')"
)


def _run(code: str, level: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FULMEN_LOG_LEVEL"}
    if level is not None:
        env["FULMEN_LOG_LEVEL"] = level
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def test_loggers_are_quiet_by_default_even_for_warnings() -> None:
    assert _run(EMIT, None).stderr == ""


def test_fulmen_log_level_prints_records_at_and_above_the_level() -> None:
    info = _run(EMIT, "WARNING").stderr
    assert "fulmen.track WARNING: uploader gave up" in info
    assert "ingest detail" not in info
    debug = _run(EMIT, "debug").stderr
    assert "fulmen.server DEBUG: ingest detail" in debug


def test_a_bad_fulmen_log_level_warns_and_names_the_variable_without_failing_the_import() -> None:
    err = _run(EMIT, "loud").stderr
    assert "FULMEN_LOG_LEVEL must be one of debug, info, warning, error, critical" in err
    assert "'loud'" in err
    assert "uploader gave up" not in err  # logging stays quiet


def test_the_cli_log_level_option_is_validated() -> None:
    result = CliRunner().invoke(cli, ["--log-level", "loud", "info"])
    assert result.exit_code == 2
    assert "--log-level must be one of debug, info" in result.output


def test_a_configured_program_receives_fulmen_records_through_propagation() -> None:
    setup = "import logging, sys; logging.basicConfig(format='%(name)s|%(message)s'); "
    code = setup + EMIT
    assert "fulmen.track|uploader gave up" in _run(code, None).stderr
