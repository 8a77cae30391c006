"""``Api``: runs, filters, history with keys and samples, scan_history; and ``fulmen runs``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fulmen import track
from fulmen.cli import cli
from fulmen.track import Api


def make_runs() -> list[str]:
    ids = []
    for project, lr in (("a", 0.1), ("a", 0.2), ("b", 0.1)):
        run = track.init(project=project, config={"lr": lr}, tags=[project], group="g" + project)
        for i in range(10):
            run.log({"loss": 1.0 / (i + 1), **({"val": float(i)} if i % 2 else {})})
        run.finish()
        ids.append(run.id)
    return ids


def test_runs_and_filters() -> None:
    ids = make_runs()
    api = Api()
    assert [r.id for r in api.runs()] == sorted(ids, key=lambda i: api.run(i).dir.name)
    assert {r.id for r in api.runs("a")} == set(ids[:2])
    assert [r.id for r in api.runs(filters={"config.lr": 0.2})] == [ids[1]]
    assert len(api.runs(filters={"tags": "b", "state": "finished"})) == 1
    assert api.runs("nobody/a") == []
    with pytest.raises(ValueError, match="unknown filter"):
        api.runs(filters={"colour": "red"})
    run = api.run(f"a/{ids[0]}")
    assert run.path == f"a/{ids[0]}"
    assert run.group == "ga"
    with pytest.raises(ValueError, match="belongs to project"):
        api.run(f"b/{ids[0]}")
    with pytest.raises(ValueError, match="no run"):
        api.run("missing")
    assert api.run(str(run.dir)).id == run.id


def test_history_keys_samples_and_scan() -> None:
    run_id = make_runs()[0]
    run = Api().run(run_id)
    rows = run.history(pandas=False)
    assert len(rows) == 10
    val_rows = run.history(keys=["val"], pandas=False)
    assert [r["_step"] for r in val_rows] == [1, 3, 5, 7, 9]
    assert set(val_rows[0]) == {"_step", "val"}
    sampled = run.history(samples=4, pandas=False)
    assert [r["_step"] for r in sampled] == [0, 3, 6, 9]
    assert [r["loss"] for r in run.scan_history(keys=["loss"])] == [
        1.0 / (i + 1) for i in range(10)
    ]
    with pytest.raises(ValueError, match="samples"):
        run.history(samples=0, pandas=False)


def test_api_reads_the_directory_init_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FULMEN_DIR", str(tmp_path / "elsewhere"))
    run = track.init()
    run.finish()
    assert [r.id for r in Api().runs()] == [run.id]
    assert [r.id for r in Api(dir=str(tmp_path / "elsewhere" / "fulmen")).runs()] == [run.id]


def test_fulmen_runs_lists_local_runs(tmp_path: Path) -> None:
    ids = make_runs()
    result = CliRunner().invoke(cli, ["runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PROJECT", "STATE", "ROWS", "METRICS"]
    assert len(lines) == 4
    assert all(any(line.startswith(i) for line in lines) for i in ids)
    assert "finished" in lines[1]
    assert " 10 " in lines[1]
    assert "loss=0.1" in lines[1]
    result = CliRunner().invoke(cli, ["runs", str(tmp_path), "--project", "b"])
    assert len(result.output.splitlines()) == 2
    empty = CliRunner().invoke(cli, ["runs", str(tmp_path / "none")])
    assert empty.exit_code == 0
    assert "no runs under" in empty.output


def test_a_folder_given_as_overrides_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        TypeError, match=r"Api\(overrides=\.\.\.\) takes a dict .* Api\(dir=\.\.\.\)"
    ):
        Api(str(tmp_path))


def test_history_is_a_list_with_pandas_false() -> None:
    run = track.init()
    run.log({"loss": 1.0})
    run.finish()
    rows = track.Api().run(run.id).history(pandas=False)
    assert isinstance(rows, list)
    assert rows[0]["loss"] == 1.0
