"""The benchmark harness's arithmetic and interleaving (the benchmarks themselves are not tests)."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_a_case_is_compared_with_the_baseline_it_names() -> None:
    cases = [
        Case("bare", lambda: 1.0),
        Case("plain + csv", lambda: 2.0),
        Case("trainer", lambda: 3.0, baseline="plain + csv"),
    ]
    report = compare("t", cases, baseline="bare", repeats=2, warmup=0)
    assert report.ratio("trainer") == 1.5  # against "plain + csv", not "bare"
    assert report.ratio("trainer", "bare") == 3.0
    assert report.fastest_ratio("trainer") == 1.5
    assert report.ratio("plain + csv") == 2.0  # no baseline of its own: the report's
    table = report.to_table()
    assert "| compared with |" in table
    assert "| trainer | 3 | 3-3 | 1.50x | 1.50x | plain + csv |" in table
    case = report.to_json()["cases"][2]  # type: ignore[index]
    assert (case["ratio"], case["ratio_to_report_baseline"]) == (1.5, 3.0)
    with pytest.raises(ValueError, match="baseline 'nope' is not one of the cases"):
        compare("t", [Case("a", lambda: 1.0, baseline="nope")], baseline="a")


SCRIPT = """
import sys
from pathlib import Path

sys.path.insert(0, {root!r})
from benchmarks.harness import Case, main

COUNTER = Path({counter!r})


def counted(value):
    def run():
        with COUNTER.open("a") as f:
            f.write("x")
        return value

    return run


main("other", "Another benchmark", [Case("o", counted(9.0))], baseline="o")
main("mine", "Mine", [Case("a", lambda: 1.0), Case("b", counted(2.0))], baseline="a")
"""


def test_processes_pool_the_samples_of_fresh_interpreters(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    script = tmp_path / "bench_x.py"
    root = str(Path(__file__).resolve().parent.parent)
    script.write_text(SCRIPT.format(root=root, counter=str(counter)))
    out = tmp_path / "mine.json"
    args = ["--repeats", "2", "--warmup", "1", "--processes", "3", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "3 processes x 2 repeats after 1 warm-up each" in done.stdout
    data = json.loads(out.read_text())
    assert data["processes"] == 3
    assert [len(c["samples"]) for c in data["cases"]] == [6, 6]  # 3 processes x 2 rounds
    assert data["cases"][1]["ratio"] == pytest.approx(2.0)
    # each benchmark of the script ran in 3 interpreters of its own, 1 warm-up + 2 rounds each
    # ("o" 9 calls, "b" 9): the interpreters started for one skipped the other
    assert len(counter.read_text()) == 9 + 9


def test_processes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--processes must be >= 1, got 0"):
        main(
            "t",
            "T",
            [Case("a", lambda: 1.0)],
            baseline="a",
            argv=["--processes", "0", "--json", str(tmp_path / "r.json")],
        )
