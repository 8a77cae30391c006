"""The side-by-side benchmark harness.

A benchmark is a list of ``Case`` objects, each a callable that performs ONE measurement and returns
the seconds it took (or raises ``Unavailable`` when its library is not installed). ``compare`` runs
every case in the same process, interleaved round by round (the order rotates each round, so no case
always runs first or last), discards the warm-up rounds, and reports per case the median of the
remaining samples, the spread, the ratio of its median to its baseline's median measured in the
same run, and the ratio of the fastest rounds (minimum to minimum: interference from other work on a
shared machine only adds time, so where the medians drift the minimums are the steadier estimate).
A case is compared with the report's baseline unless it names its own (``Case.baseline``: a plain
loop that logs to the same destination as the Trainer case compared with it, say).
Absolute times on a shared 2-core machine are noisy; the ratios are what we quote.

``main`` is the shared command line of every benchmark script: ``--repeats``, ``--warmup``,
``--processes N`` and ``--json PATH`` (default ``benchmarks/results/<name>.json``). It prints a
Markdown table and writes the JSON report. With ``--processes N`` the script runs N times in fresh
interpreters (one after another, each with its own warm-up) and the samples are pooled: where a case
sits in memory differs from one process to the next and moves its time by a percent or two, a bias
that stays fixed within one process and averages out across several.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# set in the interpreters that --processes starts: the one benchmark (by name) they are to run
ONLY_ENV = "FULMEN_BENCH_ONLY"


class Unavailable(Exception):
    """Raised by a case whose library is not importable here; the case is reported, not run."""


@dataclass(frozen=True)
class Case:
    """One contender. ``run`` performs one measurement and returns its duration in seconds.
    ``baseline`` names the case it is compared with (None: the report's baseline)."""

    name: str
    run: Callable[[], float]
    note: str = ""
    baseline: str | None = None


@dataclass
class CaseResult:
    name: str
    note: str
    baseline: str
    samples: list[float] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.samples), max(self.samples)) if self.samples else None


@dataclass
class Report:
    title: str
    unit: str
    scale: float
    baseline: str
    repeats: int
    warmup: int
    results: list[CaseResult]
    environment: dict[str, str]
    processes: int = 1

    def ratio(self, name: str, baseline: str | None = None) -> float | None:
        """The case's median over its baseline's (or over ``baseline``'s, when given)."""
        mine = self._by_name(name)
        base = self._by_name(baseline or mine.baseline).median
        if base is None or mine.median is None or base == 0:
            return None
        return mine.median / base

    def fastest_ratio(self, name: str) -> float | None:
        """The ratio of the fastest rounds: interference on a shared machine only ever adds
        time, so the minimum is the steadiest estimate of what a case itself costs."""
        mine = self._by_name(name)
        base, spread = self._by_name(mine.baseline).spread, mine.spread
        if base is None or spread is None or base[0] == 0:
            return None
        return spread[0] / base[0]

    def _by_name(self, name: str) -> CaseResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no case named {name!r} in benchmark {self.title!r}")

    def to_json(self) -> dict[str, object]:
        return {
            "title": self.title,
            "unit": self.unit,
            "baseline": self.baseline,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "processes": self.processes,
            "environment": self.environment,
            "cases": [
                {
                    **asdict(r),
                    "samples": [s * self.scale for s in r.samples],
                    "median": None if r.median is None else r.median * self.scale,
                    "ratio": self.ratio(r.name),
                    "fastest_ratio": self.fastest_ratio(r.name),
                    "ratio_to_report_baseline": self.ratio(r.name, self.baseline),
                }
                for r in self.results
            ],
        }

    def to_table(self) -> str:
        own = any(r.baseline != self.baseline for r in self.results)
        head = (
            f"| case | median ({self.unit}) | min-max ({self.unit}) | "
            + ("ratio to its baseline" if own else f"ratio vs {self.baseline}")
            + " | ratio of the fastest rounds |"
            + (" compared with |" if own else "")
        )
        rule = "|---|---:|---:|---:|---:|" + ("---|" if own else "")
        lines = [f"### {self.title}", "", head, rule]
        for r in self.results:
            if r.median is None or r.spread is None:
                cells = f"| {r.name} | n/a | n/a | {r.unavailable or 'no samples'} | n/a |"
            else:
                ratio, fastest = self.ratio(r.name), self.fastest_ratio(r.name)
                low, high = r.spread
                cells = (
                    f"| {r.name} | {_fmt(r.median * self.scale)} | {_fmt(low * self.scale)}-"
                    f"{_fmt(high * self.scale)} | {'n/a' if ratio is None else f'{ratio:.2f}x'} "
                    f"| {'n/a' if fastest is None else f'{fastest:.2f}x'} |"
                )
            lines.append(cells + (f" {r.baseline} |" if own else ""))
        rounds = f"{self.repeats} repeats after {self.warmup} warm-up"
        if self.processes > 1:
            rounds = (
                f"{self.processes} processes x {self.repeats // self.processes} repeats after "
                f"{self.warmup} warm-up each"
            )
        lines += [
            "",
            f"{rounds}, interleaved; " + ", ".join(f"{k} {v}" for k, v in self.environment.items()),
        ]
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def environment() -> dict[str, str]:
    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count()),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = str(torch.__version__)
    return env


def compare(
    title: str,
    cases: Sequence[Case],
    *,
    baseline: str,
    repeats: int = 5,
    warmup: int = 1,
    unit: str = "s",
    scale: float = 1.0,
) -> Report:
    """Run ``cases`` interleaved: ``warmup`` discarded rounds then ``repeats`` measured ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = [c.name for c in cases]
    for wanted in (baseline, *(c.baseline for c in cases if c.baseline is not None)):
        if wanted not in names:
            raise ValueError(f"baseline {wanted!r} is not one of the cases {names}")
    results = [CaseResult(c.name, c.note, c.baseline or baseline) for c in cases]
    for round_index in range(warmup + repeats):
        shift = round_index % len(cases)
        for i in [*range(shift, len(cases)), *range(shift)]:
            case, result = cases[i], results[i]
            if result.unavailable is not None:
                continue
            try:
                seconds = case.run()
            except Unavailable as exc:
                result.unavailable = str(exc) or "unavailable"
                continue
            if round_index >= warmup:
                result.samples.append(seconds)
    return Report(title, unit, scale, baseline, repeats, warmup, results, environment())


def main(
    name: str,
    title: str,
    cases: Sequence[Case],
    *,
    baseline: str,
    unit: str = "s",
    scale: float = 1.0,
    repeats: int = 5,
    warmup: int = 1,
    processes: int = 1,
    argv: Sequence[str] | None = None,
) -> Report | None:
    """The shared command line: parse ``--repeats/--warmup/--processes/--json``, compare, print,
    save. None in an interpreter that ``--processes`` started for another benchmark."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--repeats", type=int, default=repeats, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=warmup, help="discarded rounds first")
    parser.add_argument(
        "--processes",
        type=int,
        default=processes,
        help="run in this many fresh interpreters, one after another, and pool the samples",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        help="where to write the JSON report",
    )
    args = parser.parse_args(argv)
    only = os.environ.get(ONLY_ENV)
    if only is not None and only != name:
        return None
    if args.processes < 1:
        raise ValueError(f"--processes must be >= 1, got {args.processes}")
    started = time.perf_counter()
    if args.processes > 1 and only is None:
        report = _in_processes(name, title, cases, baseline, args, unit, scale)
    else:
        report = compare(
            title,
            cases,
            baseline=baseline,
            repeats=args.repeats,
            warmup=args.warmup,
            unit=unit,
            scale=scale,
        )
    print(report.to_table())
    print(f"\n({time.perf_counter() - started:.1f} s in all; JSON: {args.json})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report


def _in_processes(
    name: str,
    title: str,
    cases: Sequence[Case],
    baseline: str,
    args: argparse.Namespace,
    unit: str,
    scale: float,
) -> Report:
    """Run this script ``args.processes`` times, each a fresh interpreter measuring only the
    benchmark ``name`` (the others in the script return at once), and pool their samples."""
    results = [CaseResult(c.name, c.note, c.baseline or baseline) for c in cases]
    by_name = {r.name: r for r in results}
    env = {**os.environ, ONLY_ENV: name}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.processes):
            out = Path(tmp) / f"{i}.json"
            command = [sys.executable, *sys.argv, "--processes", "1", "--json", str(out)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not out.exists():
                raise RuntimeError(
                    f"benchmark process {i + 1} of {args.processes} failed "
                    f"(exit {done.returncode}): {done.stderr[-2000:]}"
                )
            for case in json.loads(out.read_text())["cases"]:
                result = by_name[case["name"]]
                result.samples += [s / scale for s in case["samples"]]
                result.unavailable = result.unavailable or case["unavailable"]
    return Report(
        title,
        unit,
        scale,
        baseline,
        args.repeats * args.processes,
        args.warmup,
        results,
        environment(),
        processes=args.processes,
    )


def ingest_runs(store: Any, project: str, runs: int, *, nested: bool = False) -> None:
    """``runs`` runs ``r0``.. in ``project`` of entity ``bench``, ingested through the store as a
    client's run log would send them: 20 config values (with ``nested``: 18 and a ``model``
    object, ``model.depth`` and ``model.width``) and 20 summary values, each run's different."""
    from fulmen.track import runlog as rl

    for r in range(runs):
        config: dict[str, Any] = {f"c{j}": (r * 7 + j) % 1000 / 1000 for j in range(20)}
        if nested:
            del config["c18"], config["c19"]
            config["model"] = {"depth": r % 4, "width": 32 * (r % 3 + 1)}
        summary = {f"s{j}": (r * 13 + j) % 997 / 997 for j in range(20)}
        meta = {"id": f"r{r}", "name": f"run-{r}", "project": project, "time": 1e9 + r}
        body = rl.frame(rl.RUN, rl.json_payload(1, meta))
        body += rl.frame(rl.CONFIG, rl.json_payload(2, config))
        body += rl.frame(rl.SUMMARY, rl.json_payload(3, {"update": summary}))
        store.ingest("bench", project, f"r{r}", body)
