"""Smoke test of examples/train_classifier.py on small settings (it must not rot)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_classifier_example_trains_tests_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location(
        "train_classifier", ROOT / "examples" / "train_classifier.py"
    )
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = ["--root", str(tmp_path), "--no-progress-bar"]
    results = example.main([*args, "--max-epochs", "2"])
    assert set(results) == {"test_loss", "test_acc"}
    assert results["test_acc"] > 0.5
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    again = example.main([*args, "--max-epochs", "3", "--resume"])
    assert set(again) == {"test_loss", "test_acc"}
    assert "lightning_logs" in {p.name for p in tmp_path.iterdir()}
    capsys.readouterr()
