"""``init`` and ``Run``: the API, steps, values, config, summary, resume, errors, modes."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from fulmen import track
from fulmen.track import Api, Error, StepWarning
from fulmen.track.runlog import Record, read_records
from tests.track.conftest import run_child


def history(run_id: str) -> list[dict[str, object]]:
    rows = Api().run(run_id).history(pandas=False)
    assert isinstance(rows, list)
    return rows


def test_init_log_finish_and_the_folder_layout(tmp_path: Path) -> None:
    run = track.init(project="demo", name="first", tags=["a", "b"], notes="n", group="g")
    assert track.run is run
    assert (run.project, run.name, run.tags, run.notes, run.group) == (
        "demo",
        "first",
        ("a", "b"),
        "n",
        "g",
    )
    assert run.url is None
    assert run.state == "running"
    assert run.entity is None
    assert len(run.id) == 8
    run.log({"loss": 0.5})
    track.log({"loss": 0.25})
    run.finish()
    assert run.state == "finished"
    assert track.run is None
    root = tmp_path / "fulmen"
    assert run.run_dir.parent == root
    assert run.run_dir.name.startswith("run-")
    assert run.run_dir.name.endswith(f"-{run.id}")
    assert (root / "latest-run").resolve() == run.run_dir.resolve()
    assert Path(run.dir) == run.run_dir / "files"
    assert run.log_path.parent == run.run_dir
    rows = history(run.id)
    assert [(r["_step"], r["loss"]) for r in rows] == [(0, 0.5), (1, 0.25)]
    assert all({"_runtime", "_timestamp"} <= set(r) for r in rows)
    assert rows[0]["_timestamp"] <= rows[1]["_timestamp"]  # type: ignore[operator]


def test_wandb_style_script_runs_unchanged(tmp_path: Path) -> None:
    wandb = track
    wandb.init(project="port", config={"lr": 1e-3, "layers": [64, 64]})
    wandb.config.batch_size = 32
    for epoch in range(3):
        wandb.log({"epoch": epoch, "train/loss": 1.0 / (epoch + 1)})
    wandb.summary["best"] = 0.9
    wandb.finish()
    run = Api().runs("port")[0]
    assert run.config == {"lr": 1e-3, "layers": [64, 64], "batch_size": 32}
    assert run.summary["train/loss"] == pytest.approx(1 / 3)
    assert run.summary["best"] == 0.9
    assert run.state == "finished"


def test_steps_commit_false_and_explicit_steps_merge_rows() -> None:
    run = track.init()
    run.log({"a": 1}, commit=False)
    run.log({"b": 2})  # same row as a
    run.log({"c": 3}, step=5)  # row 5 stays open
    run.log({"d": 4}, step=5)
    run.log({"e": 5})  # closes row 5
    run.log({"f": 6})
    run.finish()
    rows = history(run.id)
    assert [
        {k: v for k, v in r.items() if not k.startswith("_") or k == "_step"} for r in rows
    ] == [
        {"a": 1, "b": 2, "_step": 0},
        {"c": 3, "d": 4, "e": 5, "_step": 5},
        {"f": 6, "_step": 6},
    ]


def test_lower_step_is_kept_with_one_warning() -> None:
    run = track.init()
    run.log({"x": 1}, step=10, commit=True)
    with pytest.warns(StepWarning, match="lower than the current step"):
        run.log({"x": 2}, step=3)
    run.log({"x": 3}, step=2)  # no second warning (pytest would fail on it: warnings are errors)
    run.finish()
    assert [(r["_step"], r["x"]) for r in history(run.id)] == [(10, 1), (3, 2), (2, 3)]


def test_fast_path_types_stay_exact() -> None:
    # the same keys with other types after the fast path is set up: each value keeps its type
    run = track.init()
    for value in (1.5, 2, True, np.float32(0.25), "s", 2**65, 3.5):
        run.log({"v": value})
    run.finish()
    got = [r["v"] for r in history(run.id)]
    assert got == [1.5, 2, True, 0.25, "s", 2**65, 3.5]
    assert [type(v) for v in got] == [float, int, bool, float, str, int, float]


def test_an_interrupt_inside_the_fast_path_releases_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C (or any exception) landing while log()'s fast path holds the run's lock, here in
    # the step where a cached row struct is pointed at a new step delta: the lock must not stay
    # held, or the next write from another thread (the console tee, a watch hook) hangs forever.
    from fulmen.track import _run

    run = track.init(id="interrupted")
    run.log({"x": 1.0})  # the general path: remembers the row's signature for the fast path
    retarget = _run._FastRow.retarget

    def interrupted(self: _run._FastRow, delta: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_run._FastRow, "retarget", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.log({"x": 2.0})
    got: list[bool] = []

    def take_and_release() -> None:
        got.append(run._lock.acquire(timeout=5))
        if got[-1]:
            run._lock.release()

    other = threading.Thread(target=take_and_release)
    other.start()
    other.join()
    assert got == [True]
    monkeypatch.setattr(_run._FastRow, "retarget", retarget)
    run.log({"x": 3.0})
    run.finish()
    assert [r["x"] for r in history("interrupted")] == [1.0, 3.0]
    assert [r["_step"] for r in history("interrupted")] == [0, 1]


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ({"": 1}, ValueError, "empty"),
        ({"k" * 300: 1}, ValueError, "300 characters"),
        ({3: 1}, TypeError, "not a string"),
        ({"bad\n": 1}, ValueError, "control character"),
        ({"_step": 1}, ValueError, "reserved"),
        ({"obj": object()}, TypeError, "cannot log key 'obj'"),
    ],
)
def test_bad_keys_and_values_keep_the_rest_of_the_row(
    data: dict[object, object], error: type[Exception], match: str
) -> None:
    run = track.init()
    with pytest.raises(error, match=match):
        run.log({"good": 1.0, **data})  # type: ignore[dict-item]
    run.finish()
    (row,) = history(run.id)
    assert row["good"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"data": [1, 2]}, TypeError, "takes a dict"),
        ({"data": {"a": 1}, "step": -1}, ValueError, "step must be an int >= 0"),
        ({"data": {"a": 1}, "step": 1.5}, TypeError, "step must be an int"),
        ({"data": {"a": 1}, "step": True}, TypeError, "step must be an int"),
        ({"data": {"a": 1}, "commit": "yes"}, TypeError, "commit"),
    ],
)
def test_bad_log_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    run = track.init()
    with pytest.raises(error, match=match):
        run.log(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("project", "a/b"),
        ("project", "..\\x"),
        ("name", "bad\x00name"),
        ("project", ""),
        ("group", "x\ny"),
        ("id", "has space"),
        ("id", "../up"),
    ],
)
def test_bad_names_are_refused_at_init(argument: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=argument if argument != "id" else "run id"):
        track.init(**{argument: value})  # type: ignore[arg-type]
    assert not (tmp_path / "fulmen").exists() or not list((tmp_path / "fulmen").glob("run-*"))


def test_log_after_finish_is_an_error() -> None:
    run = track.init()
    run.finish()
    with pytest.raises(Error, match="finished"):
        run.log({"a": 1})
    with pytest.raises(Error, match=r"call fulmen.track.init\(\) before"):
        track.log({"a": 1})
    run.finish()  # idempotent


def test_config_semantics() -> None:
    ns = argparse.Namespace(lr=0.1, opt="adam")

    @dataclasses.dataclass
    class Hp:
        depth: int = 3
        path: Path = Path("/x")

    run = track.init(config=ns)
    run.config.update(Hp())
    run.config["nested"] = {"a": {"b": 1}}
    run.config.width = 8
    assert run.config.lr == 0.1
    assert run.config["depth"] == 3
    assert "width" in run.config
    assert run.config.path == "/x"  # not JSON: a string
    run.config.update({"lr": 0.1})  # same value: fine
    with pytest.raises(ValueError, match="allow_val_change"):
        run.config.lr = 0.2
    run.config.update({"lr": 0.2}, allow_val_change=True)
    with pytest.raises(TypeError, match="config must be"):
        run.config.update(42)
    run.finish()
    assert Api().run(run.id).config == {
        "lr": 0.2,
        "opt": "adam",
        "depth": 3,
        "path": "/x",
        "nested": {"a": {"b": 1}},
        "width": 8,
    }


def test_summary_and_define_metric() -> None:
    run = track.init()
    run.define_metric("loss", summary="min,last", goal="minimize")
    run.define_metric("acc", summary="max")
    run.define_metric("val/*", summary="mean")
    run.define_metric("hidden", summary="none")
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step")
    for i, (loss, acc) in enumerate([(3.0, 0.1), (1.0, 0.5), (2.0, 0.3)]):
        run.log({"loss": loss, "acc": acc, "val/x": float(i), "hidden": 1, "plain": i})
    run.summary["note"] = "set by hand"
    assert run.summary["loss"] == {"min": 1.0, "last": 2.0}
    assert run.summary["acc"] == {"max": 0.5}
    assert run.summary["val/x"] == {"mean": 1.0}
    assert "hidden" not in run.summary
    assert run.summary["plain"] == 2
    del run.summary["plain"]
    with pytest.raises(ValueError, match="summary must be one or more"):
        run.define_metric("x", summary="median")
    run.finish()
    api_run = Api().run(run.id)
    assert api_run.summary == {
        "loss": {"min": 1.0, "last": 2.0},
        "acc": {"max": 0.5},
        "val/x": {"mean": 1.0},
        "note": "set by hand",
    }
    assert [m["name"] for m in api_run.metrics][:2] == ["loss", "acc"]


def test_summary_of_a_crashed_run_is_computed_from_its_rows(tmp_path: Path) -> None:
    code = """
        import os, fulmen.track as t
        run = t.init(id="crashy")
        run.define_metric("loss", summary="min")
        for v in (3.0, 1.0, 2.0):
            run.log({"loss": v, "step2": v})
        os._exit(0)  # no finish, no exit record
    """
    assert run_child(code, tmp_path).returncode == 0
    api_run = Api().run("crashy")
    assert api_run.state == "crashed"
    assert api_run.summary == {"loss": {"min": 1.0}, "step2": 2.0}


def test_resume_modes(tmp_path: Path) -> None:
    with pytest.raises(Error, match='resume="must"'):
        track.init(id="r1", resume="must")
    run = track.init(id="r1", config={"lr": 1})
    run.log({"x": 1})
    run.log({"x": 2})
    run.finish()
    with pytest.raises(Error, match="already exists"):
        track.init(id="r1", resume="never")
    with pytest.raises(Error, match="already exists"):
        track.init(id="r1")
    again = track.init(id="r1", resume="allow", config={"bs": 4})
    assert again.resumed
    assert again.run_dir == run.run_dir
    assert again.config.as_dict() == {"lr": 1, "bs": 4}
    assert again.step == 2
    again.log({"x": 3})
    again.finish()
    api_run = Api().run("r1")
    assert [(r["_step"], r["x"]) for r in api_run.history(pandas=False)] == [(0, 1), (1, 2), (2, 3)]
    runtimes = [r["_runtime"] for r in api_run.history(pandas=False)]
    assert runtimes == sorted(runtimes)
    assert api_run.config == {"lr": 1, "bs": 4}
    assert len(list((tmp_path / "fulmen").glob("run-*"))) == 1
    fresh = track.init(id="r2", resume="allow")
    assert not fresh.resumed
    fresh.finish()


def test_resume_auto_continues_a_crashed_run_only(tmp_path: Path) -> None:
    code = """
        import os, fulmen.track as t
        run = t.init(id="auto1")
        run.log({"x": 1})
        os._exit(0)
    """
    assert run_child(code, tmp_path).returncode == 0
    run = track.init(resume=True)
    assert run.id == "auto1"
    assert run.resumed
    run.finish()
    other = track.init(resume="auto")  # the latest run finished: a new one
    assert other.id != "auto1"
    assert not other.resumed


def test_rewind_on_resume_supersedes_later_rows() -> None:
    run = track.init(id="rw")
    for step in range(6):
        run.log({"loss": float(step)}, step=step)
    run.finish()
    resumed = track.init(id="rw", resume="allow")
    resumed.log({"loss": 30.0}, step=3)  # back to the checkpoint of step 3
    resumed.log({"loss": 40.0}, step=4)
    resumed.finish()
    rows = history("rw")
    assert [(r["_step"], r["loss"]) for r in rows] == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
        (4, 40.0),
    ]
    kinds = [r.kind for r in read_records(resumed.log_path) if isinstance(r, Record)]
    assert "rewind" in kinds  # the old rows stay in the append-only log, superseded


def test_same_id_from_two_live_processes_is_an_error(tmp_path: Path) -> None:
    from tests.track.conftest import start_child

    holder = start_child(
        """
        import sys, time, fulmen.track as t
        t.init(id="shared")
        print("ready", flush=True)
        sys.stdin.readline() if False else time.sleep(30)
        """,
        tmp_path,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(Error, match="another live process"):
            track.init(id="shared", resume="allow")
        assert Api().run("shared").state == "running"
    finally:
        holder.kill()
        holder.communicate()
    assert Api().run("shared").state == "crashed"
    run = track.init(id="shared", resume="allow")  # the lock died with the process
    run.finish()


def test_two_processes_two_runs_in_one_folder(tmp_path: Path) -> None:
    from tests.track.conftest import start_child

    code = """
        import sys, fulmen.track as t
        run = t.init(project="both", name=sys.argv[-1] if len(sys.argv) > 1 else None)
        for i in range(2000):
            run.log({"i": i})
        run.finish()
    """
    children = [start_child(code, tmp_path) for _ in range(2)]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    runs = Api().runs("both")
    assert len(runs) == 2
    for api_run in runs:
        assert api_run.state == "finished"
        assert api_run.rows == 2000
        assert api_run.corrupt == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_a_clear_error_at_init(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(Error, match="cannot"):
            track.init(dir=str(locked))
    finally:
        locked.chmod(0o700)


def test_a_file_where_the_folder_should_be_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("not a folder")
    with pytest.raises(Error, match="cannot create the run directory"):
        track.init(dir=str(tmp_path / "blocked"))


def test_full_disk_is_a_clear_error_and_keeps_what_was_written(tmp_path: Path) -> None:
    # /dev/full answers every write with ENOSPC: point a live run's log at it
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    run = track.init(id="full")
    run.log({"x": 1})
    good = os.dup(run._fd)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, run._fd)
    try:
        with pytest.raises(Error, match="could not write"):
            run.log({"x": 2})
        with pytest.raises(Error, match="could not write"):
            run.log({"y": "new schema"})
    finally:
        os.dup2(good, run._fd)
        os.close(full)
        os.close(good)
    run.log({"x": 3})
    run.finish()
    assert [r["x"] for r in history("full")] == [1, 3]
    assert Api().run("full").corrupt == []


def test_a_short_write_in_the_fast_path_keeps_the_sequence_gapless(tmp_path: Path) -> None:
    # A file size limit (RLIMIT_FSIZE) makes the kernel write part of a frame: the cut-off frame
    # is removed and its sequence number handed back, so the next record follows without a gap
    # (the uploader moves by the highest *contiguous* sequence the server holds).
    code = """
        import os, resource, signal
        from fulmen import track
        from fulmen.track import Error
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        run = track.init(id="short")
        run.log({"x": 1.0})
        run.log({"x": 2.0})  # the fast path from here on
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.fstat(run._fd).st_size + 5, hard))
        try:
            run.log({"x": 3.0})
        except Error as exc:
            print("refused:", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        run.log({"x": 4.0})
        run.finish()
    """
    done = run_child(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout
    assert "short write" in done.stdout
    (path,) = (tmp_path / "fulmen").glob("run-*-short/*.fulmen")
    items = list(read_records(path))
    assert all(isinstance(r, Record) for r in items)  # no partial frame left behind
    seqs = [r.seq for r in items if isinstance(r, Record)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [r["x"] for r in history("short")] == [1.0, 2.0, 4.0]


def test_failed_and_killed_states(tmp_path: Path) -> None:
    code = """
        import fulmen.track as t
        t.init(id="boom")
        t.log({"x": 1})
        raise RuntimeError("boom")
    """
    assert run_child(code, tmp_path).returncode == 1
    assert Api().run("boom").state == "failed"
    code = """
        import os, signal, fulmen.track as t
        t.init(id="term")
        t.log({"x": 1})
        os.kill(os.getpid(), signal.SIGTERM)
    """
    assert run_child(code, tmp_path).returncode == -15
    assert Api().run("term").state == "killed"
    code = """
        import fulmen.track as t
        t.init(id="intr")
        raise KeyboardInterrupt
    """
    run_child(code, tmp_path)
    assert Api().run("intr").state == "killed"
    run = track.init(id="code")
    run.finish(exit_code=3)
    assert Api().run("code").state == "failed"


def test_console_is_captured_to_output_log(tmp_path: Path) -> None:
    code = """
        import sys, fulmen.track as t
        run = t.init(id="cons")
        print("hello from stdout")
        print("and stderr", file=sys.stderr)
        sys.stdout.write("partial")
        run.finish()
        print("after finish")
    """
    out = run_child(code, tmp_path, FULMEN_CONSOLE="on")
    assert out.returncode == 0, out.stderr
    assert "hello from stdout" in out.stdout
    assert "after finish" in out.stdout
    run = Api().run("cons")
    log = (run.dir / "files" / "output.log").read_text()
    assert log == "hello from stdout\nand stderr\npartial"
    consoles = [r.data for r in read_records(run.dir / "run-cons.fulmen") if r.kind == "console"]
    assert {"stream": "stderr", "text": "and stderr\n"} in consoles


def test_sampler_records_stats_requirements_and_git(tmp_path: Path) -> None:
    code = """
        import time, fulmen.track as t
        run = t.init(id="stats")
        time.sleep(0.6)
        run.finish()
    """
    out = run_child(code, tmp_path, FULMEN_STATS_INTERVAL="0.2", FULMEN_DISABLE_GIT="false")
    assert out.returncode == 0, out.stderr
    run = Api().run("stats")
    stats = [r.data for r in read_records(run.dir / "run-stats.fulmen") if r.kind == "stats"]
    assert stats
    assert {"cpu", "rss_mb"} <= set(stats[0])
    assert "requirements" in {f["type"] for f in run.files}
    assert "numpy==" in (run.dir / "files" / "requirements.txt").read_text()


def test_disabled_mode_is_a_stand_in(tmp_path: Path) -> None:
    run = track.init(mode="disabled", config={"a": 1})
    assert track.run is run
    assert run.disabled
    run.log({"x": object()})  # not even validated: near-free
    run.config.b = 2
    assert run.config.as_dict() == {"a": 1, "b": 2}
    run.summary["s"] = 1
    run.define_metric("x", summary="max")
    run.watch(object())
    run.finish()
    assert track.run is None
    assert not (tmp_path / "fulmen").exists()


def test_online_without_a_server_falls_back_to_offline(capsys: pytest.CaptureFixture[str]) -> None:
    run = track.init(mode="online")
    assert run.mode == "offline"
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no server is configured" in err
    run.finish()


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = tmp_path / "settings"
    settings.write_text("[default]\nproject = from-file\nentity = file-entity\ntags = f1\n")
    monkeypatch.setenv("FULMEN_SETTINGS_FILE", str(settings))
    run = track.init()
    assert (run.project, run.entity, run.tags) == ("from-file", "file-entity", ("f1",))
    run.finish()
    monkeypatch.setenv("WANDB_PROJECT", "from-wandb")
    monkeypatch.setenv("WANDB_TAGS", "w1,w2")
    run = track.init()
    assert (run.project, run.tags) == ("from-wandb", ("w1", "w2"))
    run.finish()
    monkeypatch.setenv("FULMEN_PROJECT", "from-fulmen")
    run = track.init()
    assert run.project == "from-fulmen"
    run.finish()
    run = track.init(project="from-argument")
    assert run.project == "from-argument"
    run.finish()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert track.init().disabled
    monkeypatch.setenv("FULMEN_MODE", "sideways")
    with pytest.raises(ValueError, match="mode must be one of"):
        track.init()


def test_anonymous_records_no_identity(tmp_path: Path) -> None:
    run = track.init(anonymous=True, entity="me")
    run.finish()
    start = next(r.data for r in read_records(run.log_path) if r.kind == "run")
    assert start["host"] is None
    assert start["user"] is None
    assert start["entity"] is None
    run = track.init(anonymous="never")
    run.finish()
    start = next(r.data for r in read_records(run.log_path) if r.kind == "run")
    assert start["host"] is not None


def test_reinit_finishes_the_previous_run() -> None:
    first = track.init()
    second = track.init()
    assert first.state == "finished"
    assert track.run is second


def test_import_does_not_import_numpy_or_torch() -> None:
    out = run_child(
        "import sys, fulmen.track; print('numpy' in sys.modules, 'torch' in sys.modules)",
        Path.cwd(),
    )
    assert out.stdout.strip() == "False False"


def test_nan_in_summary_and_context_manager() -> None:
    with track.init() as run:
        run.log({"x": math.nan})
    assert run.state == "finished"
    assert math.isnan(Api().run(run.id).summary["x"])


def test_a_folder_nobody_can_write_is_a_clear_error_at_init() -> None:
    # /proc refuses new folders even to root (the chmod test above is skipped for root)
    with pytest.raises(Error, match="cannot create the run directory"):
        track.init(dir="/proc/self/fulmen-test")


class _LandedEvent:
    """Stands in for a CUDA event (the edge of the world: no GPU here): already complete."""

    def synchronize(self) -> None:
        pass


def test_deferred_device_values_patch_their_row() -> None:
    import torch

    from fulmen.track._values import DeferredTensor

    run = track.init()
    run.log({"loss": 1.0})
    run.log({"loss": 2.0, "acc": 0.5})
    # a CUDA scalar logged at step 0 whose copy lands after later rows were written
    run._defer(0, [DeferredTensor("gpu_loss", torch.tensor(0.25), _LandedEvent())])
    run.finish()
    rows = history(run.id)
    assert rows[0]["loss"] == 1.0
    assert rows[0]["gpu_loss"] == 0.25
    assert "gpu_loss" not in rows[1]
    kinds = [r.kind for r in read_records(run.log_path) if isinstance(r, Record)]
    assert "patch" in kinds


def test_online_with_a_server_configured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FULMEN_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("FULMEN_FINISH_TIMEOUT", "0.5")  # nothing listens there: don't wait 30 s
    run = track.init()  # a configured server makes online the default mode
    assert run.mode == "online"
    assert capsys.readouterr().err == ""
    run.finish()
    with pytest.raises(ValueError, match="anonymous=False requires credentials"):
        track.init(anonymous=False)
    monkeypatch.setenv("WANDB_API_KEY", "key-from-wandb-variable")
    assert track.init(anonymous=False).mode == "online"
