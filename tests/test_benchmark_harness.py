"""The benchmark harness's arithmetic and interleaving (the benchmarks themselves are not tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.harness import Case, Unavailable, compare, main


def fixed(value: float, log: list[str], name: str) -> Case:
    def run() -> float:
        log.append(name)
        return value

    return Case(name, run)


def test_medians_and_ratios_against_the_baseline() -> None:
    values = iter([1.0, 3.0, 2.0])  # samples of "slow": median 2.0
    log: list[str] = []
    cases = [fixed(0.5, log, "base"), Case("slow", lambda: next(values))]
    report = compare("t", cases, baseline="base", repeats=3, warmup=0)
    assert report.results[1].median == 2.0
    assert report.ratio("slow") == 4.0
    assert report.ratio("base") == 1.0
    assert report.fastest_ratio("slow") == 2.0  # min 1.0 against the baseline's 0.5
    assert "| 4.00x | 2.00x |" in report.to_table()


def test_warmup_rounds_are_discarded_and_order_rotates() -> None:
    log: list[str] = []
    cases = [fixed(1.0, log, "a"), fixed(1.0, log, "b"), fixed(1.0, log, "c")]
    report = compare("t", cases, baseline="a", repeats=2, warmup=1)
    assert [len(r.samples) for r in report.results] == [2, 2, 2]
    assert log == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_unavailable_case_is_reported_not_run_again() -> None:
    calls = []

    def missing() -> float:
        calls.append(1)
        raise Unavailable("not installed (wandb)")

    report = compare(
        "t", [Case("base", lambda: 1.0), Case("w", missing)], baseline="base", repeats=3, warmup=1
    )
    assert len(calls) == 1
    assert report.results[1].unavailable == "not installed (wandb)"
    assert report.ratio("w") is None
    assert "not installed (wandb)" in report.to_table()


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="baseline 'x' is not one of the cases"):
        compare("t", [Case("a", lambda: 1.0)], baseline="x")
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        compare("t", [Case("a", lambda: 1.0)], baseline="a", repeats=0)


def test_main_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    main(
        "t",
        "Title",
        [Case("a", lambda: 0.002), Case("b", lambda: 0.004)],
        baseline="a",
        unit="ms",
        scale=1e3,
        argv=["--repeats", "2", "--warmup", "0", "--json", str(out)],
    )
    printed = capsys.readouterr().out
    assert "| b | 4 | 4-4 | 2.00x |" in printed
    data = json.loads(out.read_text())
    assert data["cases"][1]["median"] == pytest.approx(4.0)
    assert data["cases"][1]["ratio"] == pytest.approx(2.0)
