"""The agent: claim a trial, run it (a function here, or the config's program as a subprocess),
report the metric as the run logs it, settle the trial, and go on until the sweep has nothing left.

The loop (one agent; any number run at once, in any processes)::

    register with the controller (an flock marks this agent alive)
    until count trials are done:
        claim = controller.next_trial()        "wait": paused, poll again; "done": leave
        write the trial file, set FULMEN_SWEEP_ID / FULMEN_RUN_ID / FULMEN_SWEEP_PARAM_PATH
        run the trial, and meanwhile every POLL_S:
            read the run log: each new value of the metric -> controller.report()
            a "stop" verdict (hyperband) or a canceled sweep -> stop the trial
        settle the trial: the run's state (stopped when we stopped it) and the metric from the
        run's summary
    unregister

A subprocess is stopped with SIGUSR1 (``STOP_SIGNAL``; SIGKILL after ``STOP_GRACE_S``), so that
its run can tell the sweep's stop ("stopped") from a kill ("killed"); SIGINT/SIGTERM sent to the
agent are forwarded to the trial, which then ends and the agent leaves. A function trial is stopped
by a KeyboardInterrupt raised in the main thread (the Trainer shuts down as after Ctrl-C).
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from fulmen.sweep._command import build
from fulmen.sweep._config import SweepConfig, parse
from fulmen.sweep._controller import Controller, Trial
from fulmen.sweep._local import run_outcome
from fulmen.sweep._space import nest
from fulmen.sweep._trial import AGENT_PID, PARAM_PATH, STOP, STOP_SIGNAL, SWEEP_ID

log = logging.getLogger("fulmen.sweep")
POLL_S = 0.2
STOP_GRACE_S = 30.0


class MetricWatcher:
    """The metric's values, in the order the run logged them, read from the run log."""

    def __init__(self, root: Path, trial: Trial, marker: Path, metric: str | None) -> None:
        self.root, self.trial, self.marker, self.metric = root, trial, marker, metric
        self.seen = 0
        self.run_dir: Path | None = None
        self._size = -1
        self._not_before = 0.0

    def locate(self) -> Path | None:
        """The trial's run folder: where its init() said (the marker file), else by its id."""
        from fulmen.track._layout import find_run_dir

        if self.run_dir is None:
            if self.marker.exists():
                with contextlib.suppress(OSError):
                    self.run_dir = Path(self.marker.read_text().strip())
            else:
                self.run_dir = find_run_dir(self.root, self.trial.run_id)
        return self.run_dir

    def new_values(self, force: bool = False) -> list[tuple[int, float]]:
        """(iteration, value) logged since the last call; iteration 1 is the first.

        The run log is replayed whole (the reader's one path), so a replay is skipped while the
        file has not grown, and the next one waits 10x as long as the last took: the watcher
        costs the trial's machine at most ~10% of a core, however long the run log grows."""
        from fulmen.track._layout import log_path
        from fulmen.track._replay import replay

        if self.metric is None or self.locate() is None:
            return []
        assert self.run_dir is not None
        path = log_path(self.run_dir)
        try:
            size = path.stat().st_size
            if not force and (size == self._size or time.monotonic() < self._not_before):
                return []
            started = time.monotonic()
            rows = replay(path).rows
        except OSError:
            return []
        self._size = size
        self._not_before = time.monotonic() + 10 * (time.monotonic() - started)
        values = [r[self.metric] for r in rows if _number(r.get(self.metric))]
        out = [(i + 1, float(v)) for i, v in enumerate(values) if i >= self.seen]
        self.seen = len(values)
        return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # noqa: PLR0124 (NaN is not a value)


class Agent:
    """One agent of one sweep (see the module docstring)."""

    def __init__(
        self,
        controller: Controller,
        root: Path,
        sweep_id: str,
        function: Callable[[], Any] | None = None,
        count: int | None = None,
    ) -> None:
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            raise ValueError(f"count must be an integer >= 1 or None, got {count!r}")
        if function is not None and not callable(function):
            raise TypeError(f"function must be callable, got {type(function).__name__}")
        self.controller, self.root, self.sweep_id = controller, root, sweep_id
        self.function, self.count = function, count
        record = controller.sweep(sweep_id)
        self.record = record
        self.config: SweepConfig = parse(record.config)
        self.interrupted: int | None = None  # the signal the user sent the agent
        self._child: subprocess.Popen[bytes] | None = None
        self.done = 0

    def run(self) -> int:
        """Run trials until the sweep is done or ``count`` is reached; the trials run."""
        uses_program = any("${program}" in c for c in self.config.command)
        if self.function is None and self.config.program is None and uses_program:
            raise ValueError(
                f"sweep {self.sweep_id} has no 'program' to run: pass function= to agent(), "
                "or add program: to the sweep config"
            )
        agent_id = self.controller.register_agent(self.sweep_id)
        waiting = False
        try:
            with self._forward_signals():
                while self.count is None or self.done < self.count:
                    if self.interrupted is not None:
                        break
                    claim = self.controller.next_trial(self.sweep_id, agent_id)
                    if claim.kind == "wait":
                        if not waiting:
                            log.info("sweep %s: %s; waiting", self.sweep_id, claim.reason)
                        waiting = True
                        time.sleep(1.0)
                        continue
                    waiting = False
                    if claim.kind == "done" or claim.trial is None:
                        log.info("sweep %s: %s; agent done", self.sweep_id, claim.reason)
                        break
                    self._run_trial(claim.trial)
                    self.done += 1
        finally:
            self.controller.unregister_agent(agent_id)
        return self.done

    # --- one trial ------------------------------------------------------------------------------

    def _run_trial(self, trial: Trial) -> None:
        folder = self.root / "sweeps" / self.sweep_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"trial-{trial.number}.json"
        marker = Path(f"{path}.run")
        with contextlib.suppress(OSError):
            marker.unlink()
        nested = nest(trial.params)
        path.write_text(
            json.dumps({
                "sweep_id": self.sweep_id, "number": trial.number, "run_id": trial.run_id,
                "project": self.record.project, "entity": self.record.entity, "params": nested,
            })
        )  # fmt: skip
        env = {
            SWEEP_ID: self.sweep_id,
            AGENT_PID: str(os.getpid()),
            "FULMEN_RUN_ID": trial.run_id,
            PARAM_PATH: str(path),
            "FULMEN_PROJECT": self.record.project,
            "FULMEN_DIR": str(self.root.parent),
        }
        if self.record.entity:
            env["FULMEN_ENTITY"] = self.record.entity
        watcher = MetricWatcher(self.root, trial, marker, _metric_name(self.config))
        log.info("sweep %s: trial %d (run %s) %s", self.sweep_id, trial.number, trial.run_id,
                 nested)  # fmt: skip
        STOP.clear()
        if self.function is not None:
            stopped, failed = self._run_function(env, watcher)
        else:
            argv = build(self.config, trial.params, nested, path)
            stopped, failed = self._run_process(argv, env, watcher)
        self._poll_metric(watcher, trial, force=True)  # the last values, for hyperband's rungs
        located = watcher.locate()
        state, value, run_dir = run_outcome(
            self.root, trial.run_id, str(located) if located else None,
            self.config,
        )  # fmt: skip
        if stopped is not None:
            state = stopped
        elif state in ("running", "crashed") and run_dir is None:
            state = "failed"  # the program ended without a run: it failed before init()
            log.warning("sweep %s: trial %d ended without a run (fulmen.track.init() was never"
                        " called); recorded failed", self.sweep_id, trial.number)  # fmt: skip
        elif failed and state in ("finished", "running"):
            state = "failed"
        self.controller.finish_trial(self.sweep_id, trial.number, state, value, run_dir)
        log.info("sweep %s: trial %d %s, %s = %s", self.sweep_id, trial.number, state,
                 _metric_name(self.config), value)  # fmt: skip

    def _poll_metric(self, watcher: MetricWatcher, trial: Trial, force: bool = False) -> bool:
        """Report new metric values (hyperband only); True when the controller says stop."""
        if self.config.early_terminate is None:
            return False
        stop = False
        for iteration, value in watcher.new_values(force):
            stop = self.controller.report(self.sweep_id, trial.number, iteration, value) or stop
        return stop

    def _verdict(self, watcher: MetricWatcher) -> str | None:
        """ "stopped" (hyperband) or "killed" (sweep canceled) when the trial must stop now."""
        if self._poll_metric(watcher, watcher.trial):
            return "stopped"
        if self.controller.sweep(self.sweep_id).state == "canceled":
            return "killed"
        return None

    def _run_process(
        self, argv: list[str], env: dict[str, str], watcher: MetricWatcher
    ) -> tuple[str | None, bool]:
        full_env = {**os.environ, **env}
        log.info("sweep %s: running %s", self.sweep_id, " ".join(argv))
        try:
            child = subprocess.Popen(argv, env=full_env, start_new_session=True)
        except OSError as exc:
            log.error("sweep %s: cannot start %s: %s", self.sweep_id, argv[0], exc)
            return None, True
        self._child = child
        stopped: str | None = None
        deadline: float | None = None
        try:
            while child.poll() is None:
                if stopped is None:
                    stopped = self._verdict(watcher)
                    if stopped is not None:
                        STOP.set()
                        child.send_signal(STOP_SIGNAL)
                        deadline = time.monotonic() + STOP_GRACE_S
                elif deadline is not None and time.monotonic() > deadline:
                    child.kill()
                    deadline = None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=POLL_S)
        finally:
            self._child = None
        if self.interrupted is not None and stopped is None:
            stopped = "killed"
        return stopped, child.returncode != 0

    def _run_function(  # noqa: PLR0912, PLR0915 (every way a trial can end, in order)
        self, env: dict[str, str], watcher: MetricWatcher
    ) -> tuple[str | None, bool]:
        from fulmen import track

        assert self.function is not None
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        verdict: list[str] = []
        finished = threading.Event()
        main = threading.current_thread() is threading.main_thread()

        def watch() -> None:
            while not finished.wait(POLL_S):
                try:
                    reason = self._verdict(watcher)
                except Exception:  # the trial goes on; its metric is still read at its end
                    log.exception("sweep %s: watching the trial failed", self.sweep_id)
                    return
                if reason is not None:
                    verdict.append(reason)
                    STOP.set()
                    if main and not finished.is_set():
                        _thread.interrupt_main()
                    return

        thread = threading.Thread(target=watch, name="fulmen-sweep-watch", daemon=True)
        thread.start()
        failed = False
        try:
            try:
                self.function()
            finally:
                finished.set()
                thread.join()
        except (KeyboardInterrupt, SystemExit) as exc:
            # (the Trainer turns a KeyboardInterrupt into SystemExit(1) after its shutdown)
            if self.interrupted is not None or (
                isinstance(exc, KeyboardInterrupt) and not STOP.is_set()
            ):
                self.interrupted = self.interrupted or signal.SIGINT
                verdict[:] = ["killed"]
            elif isinstance(exc, SystemExit) and not STOP.is_set():
                failed = exc.code not in (0, None)
        except Exception:
            failed = True
            log.error("sweep %s: the trial function raised:\n%s", self.sweep_id,
                      traceback.format_exc())  # fmt: skip
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
        current = track.run
        if current is not None and getattr(current, "id", None) == watcher.trial.run_id:
            if verdict and verdict[0] == "stopped":
                current._finish(0, "stopped")
            elif verdict:
                current._finish(130, "killed")
            else:
                current.finish(exit_code=1 if failed else 0)
        return (verdict[0] if verdict else None), failed

    @contextlib.contextmanager
    def _forward_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def interrupt(signum: int, frame: FrameType | None) -> None:
            # a function trial: SIGTERM ends it as Ctrl-C does (KeyboardInterrupt), and the agent;
            # the watcher's own stop (``_thread.interrupt_main``, STOP set) ends the trial only
            if not STOP.is_set():
                self.interrupted = signum
            raise KeyboardInterrupt(f"signal {signum}")

        def forward(signum: int, frame: FrameType | None) -> None:
            self.interrupted = signum
            child = self._child
            if child is not None and child.poll() is None:
                child.send_signal(signum)

        if self.function is not None:
            previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
        else:
            previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _metric_name(config: SweepConfig) -> str | None:
    return config.metric.name if config.metric is not None else None
