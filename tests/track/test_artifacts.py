"""Artifacts: content-addressed storage, versions only on change, aliases, use and download."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulmen import track
from fulmen.track import Api, Artifact


def objects(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "fulmen" / "artifacts" / "objects").rglob("*") if p.is_file()]


def test_versions_dedup_and_aliases(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights-1")
    run = track.init()
    first = Artifact("model-abc", "model", metadata={"epoch": 1})
    first.add_file(str(ckpt))
    run.log_artifact(first, aliases=["best"])
    assert (first.version, sorted(first.aliases)) == ("v0", ["best", "latest"])
    same = Artifact("model-abc", "model")
    same.add_file(str(ckpt))
    run.log_artifact(same)  # same bytes: no new version
    assert same.version == "v0"
    ckpt.write_bytes(b"weights-2")
    changed = Artifact("model-abc", "model")
    changed.add_file(str(ckpt))
    changed.add_file(str(ckpt), name="copy/model.ckpt")  # same content twice: stored once
    run.log_artifact(changed)
    assert changed.version == "v1"
    assert changed.aliases == ["latest"]
    assert len(objects(tmp_path)) == 2  # weights-1 and weights-2, each once
    run.finish()

    user = track.init()
    best = user.use_artifact("model-abc:best")
    assert best.version == "v0"
    assert best.metadata == {"epoch": 1}
    assert Path(best.get_path("model.ckpt").download()).read_bytes() == b"weights-1"
    latest = user.use_artifact("model-abc")
    folder = Path(latest.download(str(tmp_path / "dl")))
    assert (folder / "model.ckpt").read_bytes() == b"weights-2"
    assert (folder / "copy" / "model.ckpt").read_bytes() == b"weights-2"
    assert user.use_artifact("model-abc:v1").digest == latest.digest
    with pytest.raises(ValueError, match="no artifact"):
        user.use_artifact("model-abc:v7")
    user.finish()
    logged = Api().run(run.id).artifacts
    assert [(a["version"], a["used"]) for a in logged] == [
        ("v0", False),
        ("v0", False),
        ("v1", False),
    ]
    assert all(a["used"] for a in Api().run(user.id).artifacts)
    assert Api().artifact("model-abc:latest").version == "v1"


def test_directories_and_bad_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "sub" / "b.txt").write_text("b")
    art = Artifact("dataset", "dataset")
    art.add_dir(str(data), name="files")
    run = track.init()
    run.log_artifact(art)
    assert sorted(art.entries) == ["files/a.txt", "files/sub/b.txt"]
    with pytest.raises(ValueError, match="artifact name"):
        Artifact("../escape", "model")
    with pytest.raises(ValueError, match="relative path"):
        art.add_file(str(data / "a.txt"), name="../../etc/passwd")
    with pytest.raises(ValueError, match="relative path"):
        art.add_file(str(data / "a.txt"), name="/abs")
    with pytest.raises(ValueError, match="alias"):
        run.log_artifact(art, aliases=["v3"])
    with pytest.raises(ValueError, match="no files"):
        run.log_artifact(Artifact("empty", "model"))


def test_log_artifact_with_a_path(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"x")
    run = track.init()
    art = track.log_artifact(str(tmp_path / "w.bin"), name="weights", type="model")
    assert art.version == "v0"
    assert art.type == "model"
    assert (Path(run.dir) / "artifacts" / "weights-v0.json").is_file()  # staged for upload


def test_download_cache_keeps_under_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FULMEN_ARTIFACT_CACHE_MAX_BYTES", "1500")
    run = track.init()
    for i in range(3):
        (tmp_path / "blob").write_bytes(bytes([i]) * 1000)
        art = Artifact("blob", "data")
        art.add_file(str(tmp_path / "blob"))
        run.log_artifact(art)
    folders = [Path(run.use_artifact(f"blob:v{i}").download()) for i in range(3)]
    assert [f.exists() for f in folders] == [False, False, True]  # 1000 B each, 1500 B allowed
    assert len(objects(tmp_path)) == 3  # the store itself is never trimmed


def test_delete_a_version_keeps_shared_objects(tmp_path: Path) -> None:
    shared, own = tmp_path / "shared.bin", tmp_path / "own.bin"
    shared.write_bytes(b"shared")
    own.write_bytes(b"own")
    run = track.init()
    first = Artifact("ckpt", "model")
    first.add_file(str(shared))
    first.add_file(str(own))
    run.log_artifact(first)
    second = Artifact("ckpt", "model")
    second.add_file(str(shared))
    run.log_artifact(second, aliases=["best"])
    assert len(objects(tmp_path)) == 2
    with pytest.raises(ValueError, match="aliases"):
        second.delete()
    run.use_artifact("ckpt:v0").delete()
    assert len(objects(tmp_path)) == 1  # "own" went with v0; "shared" is still used by v1
    with pytest.raises(ValueError, match="no artifact ckpt:v0"):
        run.use_artifact("ckpt:v0")
    assert run.use_artifact("ckpt:best").version == "v1"
    second.delete(delete_aliases=True)
    assert objects(tmp_path) == []
    with pytest.raises(ValueError, match="no artifact"):
        run.use_artifact("ckpt:latest")


def test_one_file_digest_for_artifacts_uploads_and_downloads(tmp_path: Path) -> None:
    # an artifact entry's digest, the uploader's "does the server have this file" digest and the
    # HTTP client's "is the downloaded copy current" digest are one function: they cannot drift
    import hashlib

    from fulmen.track import _artifacts, _http, _upload

    assert _upload.file_digest is _artifacts.file_digest
    assert _http.file_digest is _artifacts.file_digest
    big = tmp_path / "big.bin"
    content = bytes(range(256)) * (5 << 12)  # 5 MiB: read in several blocks
    big.write_bytes(content)
    assert _artifacts.file_digest(big) == hashlib.sha256(content).hexdigest()
    run = track.init()
    artifact = Artifact("data", "dataset")
    artifact.add_file(str(big))
    run.log_artifact(artifact)
    run.finish()
    assert artifact.manifest["entries"]["big.bin"]["digest"] == hashlib.sha256(content).hexdigest()
