"""What W&B scripts call around the core (issue 19, "W&B client corners"): free-text display names,
``Settings``, ``login``, ``termlog``, ``alert``, ``mark_preempting``, module-level ``config`` and
``summary``, ``define_metric(summary="best")``."""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fulmen import track
from fulmen.server import create_app
from fulmen.server._pages import esc
from fulmen.server.app import ServerConfig
from fulmen.track import Api
from fulmen.track import runlog as rl
from fulmen.track._upload import Client, sync_run

wandb = track

NAMES = ["resnet/lr=0.1", "<b>x</b>", "Résumé — 学習 🚀", "a" * 128]


class AsgiClient(Client):
    """The uploader's client, talking to the server app in process (a real ASGI app)."""

    def __init__(self, app_client: TestClient) -> None:
        super().__init__("http://testserver")
        self._app = app_client

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> bytes:
        if body is not None and not isinstance(body, bytes):
            body = body.read()  # a file streamed by put_file
        response = self._app.request(
            method, "/api/v1" + path, content=body, headers=headers, params=query
        )
        response.raise_for_status()
        return response.content


@pytest.mark.parametrize("name", NAMES)
def test_display_names_are_free_text(name: str) -> None:
    run = wandb.init(project="names", name=name, group=name, job_type="train/eval")
    assert (run.name, run.group, run.job_type) == (name, name, "train/eval")
    run.name = name + "!"[: 128 - len(name)]
    run.finish()
    assert Api().run(run.id).name == (name + "!")[:128]


def test_only_ids_entities_and_projects_are_restricted() -> None:
    with pytest.raises(ValueError, match="1 to 128 characters"):
        wandb.init(name="a" * 129)
    with pytest.raises(ValueError, match="control character"):
        wandb.init(name="two\nlines")
    with pytest.raises(ValueError, match="path separator"):
        wandb.init(project="a/b")
    with pytest.raises(ValueError, match="run id"):
        wandb.init(id="x/y")


def test_a_free_text_run_name_passes_ingest_and_pages_escaped(tmp_path: Path) -> None:
    app = TestClient(create_app(ServerConfig(data=tmp_path / "data")))
    run = wandb.init(project="names", name="<b>resnet/lr=0.1</b>", mode="offline")
    run.log({"loss": 1.0})
    run.alert("Loss is up", "<i>1.0</i>", level="ERROR")
    run.finish()
    sync_run(run.run_dir, AsgiClient(app), live=False)
    # the alert reaches the console the run page shows (its script reads this endpoint)
    lines = app.get(f"/api/v1/entities/local/projects/names/runs/{run.id}/console").json()["lines"]
    assert any("ALERT [ERROR] Loss is up: <i>1.0</i>" in str(line) for line in lines)
    listed = app.get("/local/names.json").json()
    assert [r["name"] for r in listed["first"]["runs"]] == ["<b>resnet/lr=0.1</b>"]
    page = app.get(f"/local/names/runs/{run.id}").text
    assert esc("<b>resnet/lr=0.1</b>") in page
    assert "<b>resnet" not in page


def test_settings_takes_fulmen_and_wandb_names() -> None:
    settings = wandb.Settings(start_method="thread", quiet=True, x_disable_stats=True)
    assert dict(settings) == {"silent": True, "stats_interval": 0.0}
    run = wandb.init(settings=settings)
    assert run._settings.silent is True
    assert run._settings.stats_interval == 0.0
    run.finish()
    with pytest.raises(TypeError, match=r"Settings\(colour=...\): unknown setting"):
        wandb.Settings(colour="red")


def test_login_stores_the_key_and_host_in_the_settings_file(clean_tracker: Path) -> None:
    assert wandb.login() is False  # no key anywhere: no prompt, offline logging still works
    assert wandb.login(key="secret-key", host="http://127.0.0.1:9") is True
    path = Path(os.environ["FULMEN_SETTINGS_FILE"])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    parser = configparser.ConfigParser()
    parser.read(path)
    assert dict(parser["default"]) == {"api_key": "secret-key", "base_url": "http://127.0.0.1:9"}
    assert wandb.login() is True
    with pytest.raises(NotImplementedError, match="verify=True"):
        wandb.login(verify=True)


def test_termlog_prints_with_the_prefix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb.termlog("hello")
    wandb.termlog("raw", prefix=False, newline=False)
    assert capsys.readouterr().err == "fulmen: hello\nraw"
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb.termlog("quiet")
    assert capsys.readouterr().err == ""


def test_alert_is_recorded_in_the_run_log_and_shown(capsys: pytest.CaptureFixture[str]) -> None:
    run = wandb.init(project="alerts")
    run.alert(title="Low accuracy", text="acc 0.1 < 0.5", level=wandb.AlertLevel.WARN)
    wandb.alert("Done", "finished training")
    with pytest.raises(ValueError, match="choose INFO, WARN or ERROR"):
        run.alert("x", "y", level="LOUD")
    run.finish()
    assert "ALERT [WARN] Low accuracy: acc 0.1 < 0.5" in capsys.readouterr().err
    consoles = [
        r.data["text"]
        for r in rl.read_records(run.log_path)
        if isinstance(r, rl.Record) and r.kind == "console"
    ]
    assert consoles == [
        "ALERT [WARN] Low accuracy: acc 0.1 < 0.5\n",
        "ALERT [INFO] Done: finished training\n",
    ]


def test_mark_preempting_is_recorded() -> None:
    run = wandb.init(project="preempt")
    wandb.mark_preempting()
    run.finish()
    starts = [
        r.data
        for r in rl.read_records(run.log_path)
        if isinstance(r, rl.Record) and r.kind == "run"
    ]
    assert starts[-1]["preempting"] is True
    assert starts[-1]["id"] == run.id


def test_module_level_config_and_summary_update() -> None:
    with pytest.raises(track.Error, match=r"init\(\) before fulmen.track.config.update"):
        wandb.config.update({"lr": 0.1})
    wandb.init(project="module", config={"lr": 0.1})
    wandb.config.update({"lr": 0.2, "depth": 3}, allow_val_change=True)
    wandb.run.summary.update({"best_acc": 0.9})
    run_id = wandb.run.id
    wandb.finish()
    api_run = Api().run(run_id)
    assert api_run.config == {"lr": 0.2, "depth": 3}
    assert api_run.summary["best_acc"] == 0.9


def test_define_metric_summary_best_follows_the_goal() -> None:
    run = wandb.init(project="best")
    wandb.define_metric("loss", summary="best", goal="minimize")
    wandb.define_metric("acc", summary="best,last", goal="maximize")
    for loss, acc in ((0.5, 0.1), (0.2, 0.7), (0.4, 0.3)):
        wandb.log({"loss": loss, "acc": acc})
    with pytest.raises(ValueError, match="needs goal='minimize' or 'maximize'"):
        wandb.define_metric("other", summary="best")
    run.finish()
    summary = Api().run(run.id).summary
    assert summary["loss"] == {"min": 0.2}
    assert summary["acc"] == {"max": 0.7, "last": 0.3}
