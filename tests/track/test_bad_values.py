"""Issue 18: one bad value never loses a run. Every value is either stored and read back as given
(a lone surrogate from ``os.fsdecode``, an int beyond int64) or refused in the call, naming the
key, before anything of it is written (a surrogate in a key or a name, an int beyond the float
range, nesting past ``MAX_DEPTH``); and a record that does not make sense never hides a run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fulmen import track
from fulmen.track import Api
from fulmen.track import runlog as rl
from fulmen.track._values import MAX_DEPTH
from fulmen.track.runlog import Record, escape_surrogates, read_records, unicode_safe

from .conftest import child_env, run_child

BAD = os.fsdecode(b"img_\xff.png")  # what os.listdir gives for a file name that is not UTF-8


def _records(path: Path) -> list[Record]:
    return [r for r in read_records(path) if isinstance(r, Record)]


def test_a_lone_surrogate_in_a_value_is_stored_and_read_back_as_given() -> None:
    assert BAD == "img_\udcff.png"
    run = track.init(id="sur", config={"file": BAD, "nested": {"files": [BAD]}})
    run.log({"x": 1.0})
    run.log({"x": 2.0, "sample": BAD, "list": [BAD, 1]})
    run.summary["best"] = BAD
    run.finish()
    raw = run.log_path.read_bytes()
    assert BAD.encode("utf-8", "surrogatepass") not in raw  # no string that is not UTF-8
    assert b'"img_\\udcff.png"' in raw  # JSON text's escape, which JSON readers read back
    schemas = [r.data for r in _records(run.log_path) if r.kind == "schema"]
    assert ["sample", "j"] in schemas[-1]["columns"]  # a JSON column: "\udcff" in JSON text
    back = Api().run("sur")
    assert back.corrupt == []
    assert back.state == "finished"
    assert back.rows == 2
    assert back.history(pandas=False)[1]["sample"] == BAD
    assert back.history(pandas=False)[1]["list"] == [BAD, 1]
    assert back.config == {"file": BAD, "nested": {"files": [BAD]}}
    assert back.summary["sample"] == BAD
    assert back.summary["best"] == BAD


def test_a_lone_surrogate_in_a_key_or_a_name_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"name 'img_\\udcff.png' contains a lone surrogate"):
        track.init(name=BAD)
    for setting in ("project", "group", "job_type", "notes"):
        with pytest.raises(ValueError, match=rf"{setting} .* lone surrogate"):
            track.init(**{setting: BAD})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tag .* lone surrogate"):
        track.init(tags=[BAD])
    with pytest.raises(ValueError, match=r"config key 'img_\\udcff.png' contains a lone"):
        track.init(config={BAD: 1})
    with pytest.raises(ValueError, match=r"config key 'files': key 'img_.* lone surrogate"):
        track.init(config={"files": {BAD: 1}})
    assert not (tmp_path / "fulmen").exists() or not list((tmp_path / "fulmen").glob("run-*"))
    run = track.init(id="keys")
    with pytest.raises(ValueError, match=r"key 'img_\\udcff.png' contains a lone surrogate"):
        run.log({BAD: 1.0, "ok": 2.0})
    with pytest.raises(ValueError, match=r"name .* lone surrogate"):
        run.name = BAD
    with pytest.raises(ValueError, match=r"summary key .* lone surrogate"):
        run.summary[BAD] = 1
    run.finish()
    back = Api().run("keys")
    assert back.history(pandas=False) == [{"_step": 0, "ok": 2.0, **_times(back)}]
    assert back.name == "keys"
    assert back.corrupt == []


def _times(run: object) -> dict[str, object]:
    row = run.history(pandas=False)[0]  # type: ignore[attr-defined]
    return {"_runtime": row["_runtime"], "_timestamp": row["_timestamp"]}


def test_an_int_beyond_the_float_range_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config key 'n' holds the int of about 401 digits"):
        track.init(config={"n": 10**400})
    assert not list((tmp_path / "fulmen").glob("run-*"))  # refused before any folder
    run = track.init(id="big")
    with pytest.raises(ValueError, match="cannot log key 'big': the int of about 401 digits"):
        run.log({"big": 10**400, "x": 1.0})
    with pytest.raises(ValueError, match="cannot log key 'l': the value holds the int of about"):
        run.log({"l": [1, -(10**400)]})
    with pytest.raises(ValueError, match="summary key 's' holds the int of about 5001 digits"):
        run.summary["s"] = 10**5000  # str() of it would refuse: its size is counted from bits
    run.log({"u64": 2**64 - 1, "neg": -(2**70), "edge": int(sys.float_info.max)})  # exact
    run.finish()
    back = Api().run("big")
    rows = back.history(pandas=False)
    assert [r.get("x") for r in rows] == [1.0, None]
    assert "big" not in rows[0]
    assert (rows[1]["u64"], rows[1]["neg"]) == (2**64 - 1, -(2**70))
    assert rows[1]["edge"] == int(sys.float_info.max)
    assert back.corrupt == []


def _append(path: Path, kind: int, body: bytes) -> None:
    """Append one CRC-valid frame with the next sequence number (a hand-made record)."""
    seq = max(r.seq for r in _records(path)) + 1
    with path.open("ab") as f:
        f.write(rl.frame(kind, rl.SEQ.pack(seq) + body))


def _string_row(schema: int, delta: int, text: bytes) -> bytes:
    """A HISTORY body of one string column holding ``text`` as raw bytes."""
    return rl.uvarint(schema) + rl.svarint(delta) + b"\0\0\0\0" + rl.uvarint(len(text)) + text


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_records_that_do_not_make_sense_are_reported_and_the_run_still_reads(
    tmp_path: Path,
) -> None:
    good = track.init(id="good", name="good-run")
    good.log({"loss": 0.5})
    good.finish()
    run = track.init(id="hurt", config={"lr": 0.1})
    run.log({"loss": 1.0})
    run.finish()
    path = run.log_path
    exit_frame = _records(path)[-1]
    body = path.read_bytes()
    path.write_bytes(body[: exit_frame.offset])  # the bad records go before the exit record
    schema = {"id": 9, "columns": [["text", "s"]]}
    _append(path, rl.SCHEMA, _json(schema))
    text = b"\xff\xfe not UTF-8"  # a writer bug: a string column that does not decode
    _append(path, rl.HISTORY, _string_row(9, 0, text))
    _append(path, rl.HISTORY, rl.uvarint(77) + rl.svarint(0) + b"\0\0\0\0")  # unknown schema
    _append(path, rl.RUN, _json(["not", "an", "object"]))
    _append(path, rl.SUMMARY, _json({"update": ["a", "list"]}))
    _append(path, rl.CONFIG, _json("a string"))
    _append(path, rl.CONFIG, b"[" * 100_000 + b"]" * 100_000)  # json.loads: RecursionError
    _append(path, rl.METRIC, _json({"summary": ["min"]}))  # no name
    _append(path, rl.CONFIG, _json({"momentum": 0.9}))  # good records after the bad ones count
    start = next(r.data for r in _records(path) if r.kind == "run")
    _append(path, rl.RUN, _json({**start, "name": BAD, "rename": True}))  # from an older writer
    _append(path, rl.HISTORY, _history_row(path, 1, {"loss": 0.25}))
    seq = max(r.seq for r in _records(path)) + 1
    with path.open("ab") as f:
        f.write(rl.frame(rl.EXIT, rl.json_payload(seq, exit_frame.data)))

    back = Api().run("hurt")
    assert back.state == "finished"
    assert back.rows == 2
    assert back.summary["loss"] == 0.25
    assert back.config == {"lr": 0.1, "momentum": 0.9}
    assert len(back.corrupt) == 7
    reasons = " | ".join(c.reason for c in back.corrupt)
    assert "undecodable config body" in reasons  # the reader reports the JSON it cannot parse
    assert "history record" in reasons
    assert "run record" in reasons
    assert [r.id for r in Api().runs()] == ["good", "hurt"]
    done = subprocess.run(
        [sys.executable, "-m", "fulmen", "runs", str(tmp_path)],
        capture_output=True, text=True, env=child_env(), check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("good ")
    assert "finished" in lines[1]
    assert lines[2].startswith("hurt ")
    assert "7 bad records skipped" in lines[2]
    assert " img_\\xff.png " in lines[2]  # printable: the undecodable byte as an escape


def _history_row(path: Path, step: int, values: dict[str, float]) -> bytes:
    """A HISTORY body at ``step`` (schema 0 is ``loss: d`` in these runs) for the next seq."""
    seq = max(r.seq for r in _records(path)) + 1
    return rl.uvarint(0) + rl.svarint(seq - step) + rl.fixed_struct("d").pack(0, values["loss"])


def test_a_string_written_with_surrogatepass_by_an_older_writer_reads_back() -> None:
    run = track.init(id="old")
    run.log({"x": 1.0})
    run.finish()
    path = run.log_path
    exit_frame = _records(path)[-1]
    path.write_bytes(path.read_bytes()[: exit_frame.offset])
    _append(path, rl.SCHEMA, _json({"id": 5, "columns": [["f", "s"]]}))
    text = BAD.encode("utf-8", "surrogatepass")
    seq = max(r.seq for r in _records(path)) + 1
    _append(path, rl.HISTORY, _string_row(5, seq - 1, text))
    back = Api().run("old")
    assert back.corrupt == []
    assert back.history(pandas=False)[1]["f"] == BAD


def test_escape_surrogates_gives_valid_unicode_naming_the_byte() -> None:
    assert escape_surrogates(BAD) == "img_\\xff.png"
    assert escape_surrogates("a\ud800b") == "a\\ud800b"
    assert escape_surrogates("plain é") == "plain é"
    assert unicode_safe({BAD: [BAD, 1.5, None]}) == {"img_\\xff.png": ["img_\\xff.png", 1.5, None]}
    escape_surrogates(BAD).encode("utf-8")
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than 200 levels"):
        unicode_safe(deep)


def _written(path: Path) -> list[Record]:
    """The records that logging, config and summary calls write (not the sampler's FILE)."""
    kinds = ("history", "schema", "config", "summary")
    return [r for r in _records(path) if r.kind in kinds]


def _nested(levels: int, leaf: object = 1.0, kind: type = dict) -> object:
    """``levels`` dicts (or lists) one inside the other, the innermost holding ``leaf``."""
    value: object = leaf
    for _ in range(levels):
        value = {"a": value} if kind is dict else [value]
    return value


def test_nesting_past_the_depth_limit_is_refused_with_the_limit(tmp_path: Path) -> None:
    assert MAX_DEPTH == 100
    deep = _nested(10_000)
    with pytest.raises(ValueError, match=r"config key 'a': it nests .* more than 100 levels"):
        track.init(id="deepcfg", config=deep)  # was RecursionError and a crashed run folder
    assert not list((tmp_path / "fulmen").glob("run-*"))
    run = track.init(id="deep", config={"ok": _nested(99)})  # 100 levels with the config
    before = _written(run.log_path)
    with pytest.raises(ValueError, match=r"log\(\): the dict nests more than 100 levels deep"):
        run.log(deep)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"cannot log key 'l': the value nests .* 100 levels"):
        run.log({"l": _nested(10_000, kind=list)})
    with pytest.raises(ValueError, match="config key 'more': it nests"):
        run.config.update({"more": _nested(10_000, kind=list)})
    with pytest.raises(ValueError, match="summary key 's': it nests"):
        run.summary["s"] = _nested(10_000)
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    with pytest.raises(ValueError, match="config key 'c': it nests"):
        run.config.update({"c": cycle})  # a dict holding itself: refused, not a RecursionError
    assert _written(run.log_path) == before  # nothing of the refused calls was written
    run.log(_nested(100))  # type: ignore[arg-type]
    run.log({"l": _nested(99, kind=list)})
    run.finish()
    back = Api().run("deep")
    assert back.corrupt == []
    assert back.rows == 2
    assert back.history(pandas=False)[0]["/".join(["a"] * 100)] == 1.0
    assert back.config == {"ok": _nested(99)}


def test_a_full_disk_never_stops_the_program_and_finish_reports_it(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes every write past the limit fail (EFBIG) or come up short, as a full disk
    # does, for the run log and output.log alike; stdout here is a pipe, which it does not limit.
    code = """
        import logging, os, resource, signal, sys, warnings
        from fulmen import track
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        logging.basicConfig(stream=sys.__stderr__, format="LOG %(name)s %(message)s")
        run = track.init(id="full")
        print("before the disk fills")
        run.log({"x": 1.0})
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.fstat(run._fd).st_size + 40, hard))
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            for i in range(200):
                print(f"line {i} of the program's output")
            print("the program is still running")
            run.finish()
        print("finish returned", run.state)
        print("WARNINGS", len(said), [str(w.message)[:60] for w in said], file=sys.__stderr__)
    """
    done = run_child(code, tmp_path, FULMEN_CONSOLE="on")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "before the disk fills"
    assert out[1:201] == [f"line {i} of the program's output" for i in range(200)]
    assert out[201:] == ["the program is still running", "finish returned finished"]
    err = done.stderr
    assert err.count("stopped capturing the console") == 2  # once as a warning, once logged
    assert "LOG fulmen.track fulmen: run 'full' stopped capturing the console" in err
    assert "WARNINGS 2" in err  # the console once, the end of the run once
    assert "could not write the end of run 'full'" in err
    assert "Traceback" not in err
    back = Api(dir=str(tmp_path)).run("full")
    assert back.rows == 1  # what was written before is intact
    assert back.state == "crashed"  # the exit record did not fit: readers say so
    assert [c for c in back.corrupt if not c.torn] == []


def _file_records(path: Path) -> list[dict[str, object]]:
    return [r.data for r in _records(path) if r.kind == "file" and r.data["type"] == "user"]


def test_a_file_outside_the_run_folder_is_never_recorded_as_such(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not the run's")
    run = track.init(id="files")
    outside = os.path.relpath(secret, run.dir)  # "../../../secret.txt"
    assert outside.startswith("..")
    for path in (outside, str(secret), "/etc/passwd"):
        with pytest.raises(ValueError, match=r"save_file: .* is outside the run's files folder"):
            run.save_file(path)
    (Path(run.dir) / "sub").mkdir()
    (Path(run.dir) / "sub" / "link").symlink_to(secret)  # inside by name, outside in fact
    with pytest.raises(ValueError, match="save_file: 'sub/link' is outside"):
        run.save_file("sub/link")
    (Path(run.dir) / "sub" / "ok.txt").write_text("12345")
    run.save_file("sub/ok.txt")
    run.save_file("sub/../sub/ok.txt")  # stays inside: recorded by its plain path
    # save() copies a file the user names into the run folder (as W&B does): an absolute path
    # under its name, a relative one under its path from base_path (default: the working
    # directory), which it may not walk above (W&B: "globs can't walk above base_path")
    run.save(str(secret))
    nested = tmp_path / "ckpt" / "epoch1"
    nested.mkdir(parents=True)
    (nested / "model.pt").write_bytes(b"w" * 7)
    run.save(str(nested / "model.pt"), base_path=str(tmp_path))
    run.save("ckpt/epoch1/model.pt")
    with pytest.raises(ValueError, match=r"save: '\.\./x' walks above base_path"):
        run.save("../x")
    with pytest.raises(ValueError, match=r"save: .* is not under base_path"):
        run.save(str(secret), base_path=str(nested))
    run.save(str(Path(run.dir) / "sub" / "ok.txt"))  # already in the folder: recorded, no copy
    run.finish()
    files = _file_records(run.log_path)
    assert [(f["path"], f["size"]) for f in files] == [
        ("sub/ok.txt", 5),
        ("sub/ok.txt", 5),
        ("secret.txt", 13),
        ("ckpt/epoch1/model.pt", 7),
        ("ckpt/epoch1/model.pt", 7),
        ("sub/ok.txt", 5),
    ]
    assert (Path(run.dir) / "secret.txt").read_text() == "not the run's"  # a copy, not a link
    assert not (Path(run.dir) / "secret.txt").is_symlink()
    user = [f["path"] for f in Api().run("files").files if f["type"] == "user"]
    assert user == [f["path"] for f in files]


def test_undecodable_bytes_in_the_command_line_are_recorded_as_escapes(tmp_path: Path) -> None:
    code = "from fulmen import track; import numpy as np, sys; r = track.init(id='argv'); " + (
        "r.log({'n': np.str_(sys.argv[1])}); r.finish()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, os.fsdecode(b"data_\xfe.bin")],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    back = Api(dir=str(tmp_path)).run("argv")
    assert back.data.meta["args"] == ["data_\\xfe.bin"]  # valid Unicode, naming the byte
    assert back.history(pandas=False)[0]["n"] == os.fsdecode(b"data_\xfe.bin")  # a value: as given


def test_a_full_disk_at_init_raises_and_gives_the_run_id_back(tmp_path: Path) -> None:
    code = """
        import resource, signal
        from fulmen import track
        from fulmen.track import Error
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40, hard))  # the header fits, the RUN does not
        try:
            track.init(id="early")
        except Error as exc:
            print("refused:", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        run = track.init(id="early", resume="allow")  # the id is free again in this process
        run.log({"x": 1.0})
        run.finish()
    """
    done = run_child(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "refused: could not write to the run log" in done.stdout
    back = Api(dir=str(tmp_path)).run("early")
    assert back.state == "finished"
    assert back.rows == 1
