"""``fulmen server create-key``, ``fulmen login`` and ``fulmen sync`` as commands, and the
summary the server computes (fast and slow decoding paths agree with the client's)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from fulmen.cli import cli
from fulmen.server.app import ServerConfig, create_app
from fulmen.server.store import open_store
from tests.server.runlogs import CLIENT_HEADERS, LogWriter


def test_create_key_prints_a_key_the_store_knows(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["server", "--data", str(tmp_path), "create-key", "--entity", "alice"]
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    store = open_store(tmp_path)
    assert store.entity_for_key(key) == "alice"
    assert store.entity_for_key(key + "x") is None
    store.close()
    bad = CliRunner().invoke(
        cli, ["server", "--data", str(tmp_path), "create-key", "--entity", "../x"]
    )
    assert bad.exit_code == 2


def test_unknown_db_scheme_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="postgresql") as raised:
        open_store(tmp_path, "mysql://u:secret@db/fulmen")
    message = str(raised.value)
    assert message.startswith("--database (FULMEN_DATABASE_URL) 'mysql://...': use sqlite:///PATH")
    assert "secret" not in message  # a password is never shown
    for bad in ("sqlite:///", "sqlite://relative", "fulmen.db"):
        with pytest.raises(ValueError, match="use sqlite:///PATH"):
            open_store(tmp_path, bad)


def test_login_writes_a_user_only_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "conf" / "settings"
    monkeypatch.setenv("FULMEN_SETTINGS_FILE", str(settings))
    for var in ("FULMEN_BASE_URL", "WANDB_BASE_URL", "FULMEN_API_KEY", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(cli, ["login", "--host", "http://h:1/", "--key", "k1"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    from fulmen.track._settings import resolve

    s = resolve({})
    assert (s.base_url, s.api_key) == ("http://h:1", "k1")
    monkeypatch.setenv("WANDB_API_KEY", "from-wandb-env")  # the environment beats the file
    assert resolve({}).api_key == "from-wandb-env"
    assert resolve({"api_key": "arg"}).api_key == "arg"


def test_sync_to_an_unreachable_server_fails_and_marks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "fulmen" / "run-20260101_000000-abc"
    w = LogWriter(run_dir / "run-abc.fulmen")
    w.run("abc")
    monkeypatch.setenv("FULMEN_SETTINGS_FILE", str(tmp_path / "none"))
    result = CliRunner().invoke(cli, ["sync", str(run_dir), "--host", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "failed" in result.output
    assert not (run_dir / ".synced").exists()


def test_summary_follows_define_metric_on_both_decoding_paths(tmp_path: Path) -> None:
    client = TestClient(create_app(ServerConfig(data=tmp_path)), headers=CLIENT_HEADERS)
    w = LogWriter()
    w.run("s1")
    w.record("metric", {"name": "acc", "summary": ["max", "last"]})
    w.record("metric", {"name": "val/*", "summary": ["min"]})
    for i in range(10):
        w.history(i, {"acc": float(i % 4), "val/loss": 10.0 - i})
    w.history(10, {"acc": 0.5, "note": "a string sends this row down the slow path"})
    w.record("summary", {"update": {"best": 1}, "remove": []})
    url = "/api/v1/entities/local/projects/proj/runs/s1"
    assert client.post(f"{url}/records", content=w.body()).status_code == 200
    summary = client.get(url).json()["summary"]
    assert summary["acc"] == {"max": 3.0, "last": 0.5}
    assert summary["val/loss"] == {"min": 1.0}
    assert summary["best"] == 1
    assert summary["note"].startswith("a string")
    assert json.loads(json.dumps(summary)) == summary
