"""Sweeps: search quality on Branin, grid coverage by parallel agents, a killed agent, and the
local controller's "next trial" latency with 1,000 finished trials.

    python benchmarks/bench_sweep.py [--seeds 10] [--budget 30] [--quick] [--json PATH]

1. Branin (minimum 0.397887 on [-5, 10] x [0, 15]): bayes (Optuna TPE) against random, the same
   budget of trials, ``--seeds`` sweeps each; the mean (and median) best value found. Trials are
   scored straight through the controller (claim, evaluate, finish), so only the search differs.
2. Grid, 2 agent processes (``fulmen.track.agent`` with a function trial that makes a real run)
   on a 6 x 6 grid: every point run exactly once?
3. 4 agent processes on a 12-point grid, one killed with ``kill -9`` mid-trial: the sweep finishes,
   the killed trial is marked crashed.
4. "next trial" (claim + settle) with 1,000 finished trials, random, grid and bayes, against the
   floor of any claim: one bare ``BEGIN IMMEDIATE``/INSERT/COMMIT on the same SQLite file
   (the harness: interleaved rounds, medians; target <= 20 ms).
5. The same "next trial" over HTTP: a real ``fulmen server`` process on loopback holds the
   sweeps, ``ServerController`` (the agents' client) claims; against the floor of any request to
   it: one bare HTTP round trip (``GET /api/v1/health`` through the same client). Target <= 20 ms.

``--parts`` picks the sections (default all: ``branin,grid,killed,latency,server``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Case, compare  # noqa: E402
from fulmen.sweep import LocalController, ServerController, Trial  # noqa: E402
from fulmen.sweep._space import to_latent  # noqa: E402

BRANIN_MIN = 0.397887
BRANIN = {
    "metric": {"name": "f", "goal": "minimize"},
    "parameters": {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}},
}
QUIET = {"FULMEN_CONSOLE": "off", "FULMEN_STATS_INTERVAL": "0", "FULMEN_DISABLE_GIT": "true"}


def branin(x1: float, x2: float) -> float:
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def best_found(method: str, seed: int, budget: int, folder: Path) -> float:
    c = LocalController(folder)
    sweep_id = c.create({**BRANIN, "method": method, "run_cap": budget}, "bench", seed=seed)
    agent = c.register_agent(sweep_id)
    best = math.inf
    while (claim := c.next_trial(sweep_id, agent)).kind == "trial":
        assert claim.trial is not None
        value = branin(claim.trial.params["x1"], claim.trial.params["x2"])
        best = min(best, value)
        c.finish_trial(sweep_id, claim.trial.number, "finished", value)
    c.close()
    return best


def quality(seeds: int, budget: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("random", "bayes"):
            bests = [best_found(method, s, budget, Path(tmp)) for s in range(seeds)]
            out[method] = {"mean": statistics.fmean(bests), "median": statistics.median(bests),
                           "bests": bests}  # fmt: skip
    return out


AGENT = """
import sys, time, fulmen.track as wandb
def train():
    run = wandb.init()
    time.sleep(float(sys.argv[2]))
    wandb.log({"f": float(run.config.a + run.config.b)})
wandb.agent(sys.argv[1], function=train)
"""


def _start_agents(folder: Path, sweep_id: str, n: int, sleep: float) -> list[Any]:
    env = {**os.environ, **QUIET, "FULMEN_DIR": str(folder)}
    return [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(AGENT), sweep_id, str(sleep)],
                         cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(n)
    ]  # fmt: skip


def grid_coverage(side: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        c = LocalController(folder / "fulmen")
        values = list(range(side))
        sweep_id = c.create({"method": "grid", "metric": {"name": "f"},
                             "parameters": {"a": {"values": values}, "b": {"values": values}}},
                            "bench")  # fmt: skip
        start = time.perf_counter()
        procs = _start_agents(folder, sweep_id, 2, 0.0)
        for p in procs:
            p.communicate(timeout=600)
        seconds = time.perf_counter() - start
        trials = c.trials(sweep_id)
        points = [(t.params["a"], t.params["b"]) for t in trials]
        agents = {t.agent for t in trials}
        result = {
            "points": side * side, "trials": len(trials), "distinct": len(set(points)),
            "all_covered": set(points) == {(a, b) for a in values for b in values},
            "per_agent": sorted(sum(t.agent == a for t in trials) for a in agents),
            "finished": sum(t.state == "finished" for t in trials), "seconds": seconds,
        }  # fmt: skip
        c.close()
    return result


def killed_agent() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        c = LocalController(folder / "fulmen")
        sweep_id = c.create({"method": "grid", "metric": {"name": "f"},
                             "parameters": {"a": {"values": [0, 1, 2, 3]},
                                            "b": {"values": [0, 1, 2]}}}, "bench")  # fmt: skip
        procs = _start_agents(folder, sweep_id, 4, 1.0)
        victim = procs[0]
        deadline = time.monotonic() + 120
        while not any(t.state == "running" and t.agent is not None for t in c.trials(sweep_id)
                      if _pid_of(c, t.agent) == victim.pid):  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError("the victim never started a trial")
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        for p in procs:
            p.communicate(timeout=600)
        # the survivors may all have left before the victim's trial could be settled: one more
        # agent's claim settles it (as any later agent would)
        procs = _start_agents(folder, sweep_id, 1, 0.0)
        procs[0].communicate(timeout=600)
        trials = c.trials(sweep_id)
        result = {
            "trials": len(trials),
            "states": {s: sum(t.state == s for t in trials) for s in {t.state for t in trials}},
            "sweep_state": c.sweep(sweep_id).state,
        }
        c.close()
    return result


def _pid_of(c: LocalController, agent: str) -> int | None:
    from fulmen.sweep import _sql

    with c.db.read() as tx:
        row = _sql.agent_row(tx, agent)
    return None if row is None or row[2] is None else int(row[2])


LATENCY_CONFIGS = {
        "random": {**BRANIN, "method": "random"},
        "bayes": {**BRANIN, "method": "bayes"},
        "grid": {"method": "grid", "metric": {"name": "f"},
                 "parameters": {"a": {"values": list(range(100))},
                                "b": {"values": list(range(100))}}},
}  # fmt: skip


def _sweeps_with_finished(c: Any, finished: int) -> dict[str, tuple[str, str]]:
    """method -> (sweep id, agent id): a sweep per method with ``finished`` finished trials
    (prior runs for random and bayes; claimed and finished for real for grid, whose trials carry
    their point's key)."""
    import random

    from fulmen.sweep import parse

    rng = random.Random(0)
    sweeps: dict[str, tuple[str, str]] = {}
    for method, config in LATENCY_CONFIGS.items():
        params = parse(config).parameters
        priors = []
        if method != "grid":
            for i in range(finished):
                flat = {"x1": rng.uniform(-5, 10), "x2": rng.uniform(0, 15)}
                latent = {p.name: to_latent(p, flat[p.name]) for p in params}
                priors.append(Trial("", i, f"prior{method}{i}", flat, state="finished",
                                    value=branin(**flat), latent=latent))  # fmt: skip
        sweep_id = c.create(config, "bench", prior_runs=priors, seed=1)
        agent = c.register_agent(sweep_id)
        if method == "grid":
            for _ in range(finished):
                claim = c.next_trial(sweep_id, agent)
                assert claim.trial is not None
                c.finish_trial(sweep_id, claim.trial.number, "finished", 1.0)
        sweeps[method] = (sweep_id, agent)
    return sweeps


def latency(finished: int, repeats: int) -> Any:
    tmp = tempfile.mkdtemp()
    c = LocalController(tmp)
    sweeps = _sweeps_with_finished(c, finished)

    def claim(method: str) -> float:
        sweep_id, agent = sweeps[method]
        start = time.perf_counter()
        result = c.next_trial(sweep_id, agent)
        seconds = time.perf_counter() - start
        assert result.trial is not None, result.reason
        c.finish_trial(sweep_id, result.trial.number, "finished", 1.0)
        return seconds

    floor_db = sqlite3.connect(Path(tmp) / "sweeps.db", timeout=60, isolation_level=None)
    floor_db.execute("CREATE TABLE IF NOT EXISTS floor (x INTEGER)")

    def floor() -> float:
        start = time.perf_counter()
        floor_db.execute("BEGIN IMMEDIATE")
        floor_db.execute("INSERT INTO floor VALUES (1)")
        floor_db.execute("COMMIT")
        return time.perf_counter() - start

    cases = [Case("bare SQLite write transaction", floor)] + [
        Case(f"next trial, {m}, {finished} finished", lambda m=m: claim(m), baseline=None)
        for m in ("random", "grid", "bayes")
    ]
    report = compare("next trial", cases, baseline="bare SQLite write transaction",
                     repeats=repeats, warmup=2, unit="ms", scale=1e3)  # fmt: skip
    c.close()
    floor_db.close()
    return report


def server_latency(finished: int, repeats: int) -> Any:
    """Section 5: "next trial" over HTTP against a real server process on loopback."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "fulmen", "server", "--port", str(port),
                             "--data", str(tmp / "data")], env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/api/v1/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        c = ServerController(url, root=tmp / "fulmen", project="bench")
        sweeps = _sweeps_with_finished(c, finished)

        def claim(method: str) -> float:
            sweep_id, agent = sweeps[method]
            start = time.perf_counter()
            result = c.next_trial(sweep_id, agent)
            seconds = time.perf_counter() - start
            assert result.trial is not None, result.reason
            c.finish_trial(sweep_id, result.trial.number, "finished", 1.0)
            return seconds

        def round_trip() -> float:
            start = time.perf_counter()
            c.client.json("GET", "/health")
            return time.perf_counter() - start

        cases = [Case("bare HTTP round trip (GET /health)", round_trip)] + [
            Case(f"next trial over HTTP, {m}, {finished} finished", lambda m=m: claim(m),
                 baseline=None)
            for m in ("random", "grid", "bayes")
        ]  # fmt: skip
        report = compare("next trial, server", cases,
                         baseline="bare HTTP round trip (GET /health)", repeats=repeats,
                         warmup=2, unit="ms", scale=1e3)  # fmt: skip
        c.close()
        return report
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--finished", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 seeds, 3 x 3 grid, 5 repeats")
    parser.add_argument("--parts", default="branin,grid,killed,latency,server",
                        help="the sections to run, comma-separated")  # fmt: skip
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "sweep.json"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.repeats = 3, 5
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {}

    if "branin" in parts:
        q = results["branin"] = quality(args.seeds, args.budget)
        print(f"## Branin (minimum {BRANIN_MIN}), {args.budget} trials, {args.seeds} seeds\n")
        print("| method | mean best | median best |\n|---|---|---|")
        for method in ("random", "bayes"):
            print(f"| {method} | {q[method]['mean']:.4f} | {q[method]['median']:.4f} |")
        wins = sum(b < r for b, r in zip(q["bayes"]["bests"], q["random"]["bests"], strict=True))
        print(f"\nbayes better than random on {wins} of {args.seeds} seeds\n")

    if "grid" in parts:
        g = results["grid"] = grid_coverage(3 if args.quick else 6)
        print(f"## Grid, 2 agent processes: {g['points']} points, {g['trials']} trials, "
              f"{g['distinct']} distinct, every point covered: {g['all_covered']}, per agent "
              f"{g['per_agent']}, {g['seconds']:.1f} s\n")  # fmt: skip

    if "killed" in parts:
        k = results["killed"] = killed_agent()
        print(f"## 4 agents, one killed with kill -9 mid-trial: {k['trials']} trials, states "
              f"{k['states']}, sweep {k['sweep_state']}\n")  # fmt: skip

    for part, measure in (("latency", latency), ("server", server_latency)):
        if part in parts:
            report = measure(args.finished, args.repeats)
            print(report.to_table())
            results[f"{part}_ms"] = {r.name: r.median * 1e3 if r.median else None
                                     for r in report.results}  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
