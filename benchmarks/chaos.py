"""A chaos run: serving and training while workers die, freeze, retire and join.

``python -m benchmarks.chaos --minutes M``. A ``dask scheduler`` and nanny-managed
``dask worker`` processes on 127.0.0.1; models with 2 replicas (two echo models, and
memory models under ``eviction: lru`` whose replicas do not all fit: they evict each
other as they are called), caller threads, a steady stream of trainings (every other
one with ``retries: 2``), and faults at random intervals: kill -9 of a worker process
(its nanny restarts it), SIGSTOP for longer than ``health_check_timeout`` then SIGCONT,
``retire_workers``, a worker added, and the scheduler restarted once (kill -9, then a
new one on the same address, with new workers). Prints a table of what held: calls
ok / failed / over the latency bound, p50/p99 in and out of fault windows, trainings
submitted / completed / errored (with the reasons) / stuck, models unserved at the end
(no answer to a last call and two more tries, each within call_timeout, once the faults
stopped; one that answered only on a retry is listed with the seconds it took),
actors and bookings left over after closing them, and the caller's RSS drift.

Goals: no failed call and no stuck training outside the scheduler restart window,
nothing left over. ``tests/reliability/test_chaos.py`` runs a short one.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .measure_memory_pressure import _memory_fraction
from .stats import percentile

REPO = Path(__file__).resolve().parent.parent
HEALTH_CHECK_TIMEOUT = 3.0
CALL_TIMEOUT = 30.0
LATENCY_BOUND = 20.0  # seconds: a call slower than this is counted "over the bound"
SETTLE = HEALTH_CHECK_TIMEOUT + 12.0  # after a fault, calls still count as in its window
WORKERS = 4
MEMORY_LIMIT = "700MB"
MEMORY_MODEL_MB = 60
MEMORY_MODELS = 5  # x 2 replicas; room for 2 per worker: they evict each other
CALLERS = 8
TRAINING_EVERY = 0.5  # seconds between trainings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChaosCluster:
    """A scheduler and nanny-managed workers as process groups (killed whole at the end)."""

    def __init__(self, workdir: Path):
        from distributed import Client

        self.workdir, self.port = workdir, _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        self.workers: list[subprocess.Popen] = []
        self.scheduler = self._start_scheduler()
        self.client = Client(self.address, set_as_default=False, timeout=30)

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / log, "ab"),  # noqa: SIM115
            start_new_session=True,  # its own process group: the nanny and its worker
        )

    def _start_scheduler(self) -> subprocess.Popen:
        process = self._spawn(
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-dashboard",
            ],
            "scheduler.log",
        )
        _wait_for(lambda: _listening(self.port), 30, "the scheduler")
        return process

    def add_worker(self) -> None:
        before = len(self.worker_pids())
        self.workers.append(
            self._spawn(
                [
                    "distributed.cli.dask_worker",
                    self.address,
                    "--host",
                    "127.0.0.1",
                    "--nanny",
                    "--nthreads",
                    "2",
                    "--memory-limit",
                    MEMORY_LIMIT,
                    "--no-dashboard",
                    "--death-timeout",
                    "60",
                ],
                f"worker-{len(self.workers)}.log",
            )
        )
        _wait_for(lambda: len(self.worker_pids()) > before, 60, "a new worker")

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> the worker process's pid (not its nanny's)."""
        pids = _bounded(lambda: self.client.run(os.getpid, on_error="return"), 20)
        return {a: p for a, p in (pids or {}).items() if isinstance(p, int)}

    def restart_scheduler(self) -> None:
        """kill -9 the scheduler, start a new one on the same address and new workers."""
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait(10)
        for worker in self.workers:
            _kill_group(worker)
        self.workers = []
        self.scheduler = self._start_scheduler()
        _wait_for(lambda: self.client.status == "running", 60, "the observer to reconnect")
        for _ in range(WORKERS):
            self.add_worker()

    def close(self) -> None:
        try:
            self.client.close(timeout=5)
        finally:
            for process in [*self.workers, self.scheduler]:
                _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)


def _bounded(work, seconds: float) -> Any:
    """``work()``'s result, or None if it raised or did not return within ``seconds`` (a
    fault must not stop the faults that follow)."""
    result: list = [None]

    def run() -> None:
        try:
            result[0] = work()
        except Exception as err:  # noqa: BLE001 - None: the caller says what failed
            print(f"chaos: {err!r}", file=sys.stderr)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return result[0]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Run:
    """The models, callers, trainings and faults of one chaos run, and what they saw."""

    def __init__(self, minutes: float, seed: int, workdir: Path):
        self.duration, self.random = minutes * 60, random.Random(seed)
        self.workdir = workdir
        self.cluster = ChaosCluster(workdir)
        self.calls: list[tuple[float, float, str | None]] = []  # (start, seconds, error)
        self.windows: list[tuple[str, float, float]] = []  # (fault, start, end)
        self.restart: tuple[float, float] | None = None
        self.trainings: list[tuple[float, Any, bool]] = []  # (submitted, future, retries)
        self.refused: list[str] = []  # trainings refused at submit
        self.faults: collections.Counter = collections.Counter()
        self.stop = threading.Event()

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        from caikit.core.modules import ModuleConfig

        from caikit_dask import DaskModelInitializer, DaskModelTrainer

        from .modules import BenchEcho, BenchMemory

        for _ in range(WORKERS):
            self.cluster.add_worker()
        self.cluster.client.run(__import__, "benchmarks.modules")
        connection = {"address": self.cluster.address, "timeout": "60s"}
        common = {
            "connection": connection,
            "replicas": 2,
            "call_timeout": f"{CALL_TIMEOUT}s",
            "health_check_period": "0.5s",
            "health_check_timeout": f"{HEALTH_CHECK_TIMEOUT}s",
        }
        room = 2.5 * MEMORY_MODEL_MB * 2**20
        fraction = _memory_fraction(self.cluster.client, room)
        echo = DaskModelInitializer(common, "chaos-echo")
        lru = DaskModelInitializer(
            {**common, "eviction": "lru", "lazy": True, "memory_fraction": fraction}, "chaos-lru"
        )
        self.models: dict[str, Any] = {}
        for index in range(2):
            path = self.workdir / f"echo-{index}"
            BenchEcho.train().save(str(path))
            self.models[path.name] = echo.init(ModuleConfig.load(str(path)))
        weights = BenchMemory.train(MEMORY_MODEL_MB)
        for index in range(MEMORY_MODELS):
            path = self.workdir / f"memory-{index}"
            weights.save(str(path))
            self.models[path.name] = lru.init(ModuleConfig.load(str(path)))
        for model in self.models.values():
            model.run("warm")
        self.trainers = {
            retries: DaskModelTrainer(
                {"connection": connection, "retries": retries}, f"chaos-{retries}"
            )
            for retries in (0, 2)
        }
        self.bench_echo = BenchEcho
        self.rss_start = psutil.Process().memory_info().rss

    # -- the load ------------------------------------------------------------------------

    def caller(self, index: int) -> None:
        names = list(self.models)
        pick = random.Random(index)
        while not self.stop.is_set():
            name = pick.choice(names)
            started = time.monotonic()
            try:
                self.models[name].run("hello")
                error = None
            except Exception as err:  # noqa: BLE001 - counted, with its type
                error = f"{name}: {type(err).__name__}: {str(err)[:160]}"
            self.calls.append((started, time.monotonic() - started, error))

    def trainer(self) -> None:
        count = 0
        while not self.stop.wait(TRAINING_EVERY):
            retries = 2 if count % 2 else 0
            count += 1
            try:
                future = self.trainers[retries].train(
                    self.bench_echo, sleep=self.random.uniform(0.2, 2.0)
                )
            except Exception as err:  # noqa: BLE001 - refused at submit (scheduler away)
                self.refused.append(f"{type(err).__name__}: {str(err)[:120]}")
                continue
            self.trainings.append((time.monotonic(), future, bool(retries)))

    # -- faults --------------------------------------------------------------------------

    def faults_loop(self, started: float) -> None:
        """A fault every few seconds (fewer in long runs), each kind in turn in a shuffled
        order, and the scheduler restart once, half way."""
        restart_at = started + self.duration * 0.5
        gap = min(8.0, max(2.0, self.duration / 10))
        kinds: list[str] = []
        while not self.stop.wait(self.random.uniform(0.5, 1.5) * gap):
            if self.restart is None and time.monotonic() >= restart_at:
                self._restart_scheduler()
                continue
            pids = self.cluster.worker_pids()
            if not pids:
                continue
            if not kinds:
                kinds = ["kill", "freeze", "retire"]
                self.random.shuffle(kinds)
            kind = kinds.pop()
            if len(pids) < WORKERS:  # e.g. a restarted worker not back yet
                kind = "add"
            self._fault(kind, pids)
            if kind == "retire":  # and a worker joins in its place
                self._fault("add", pids)

    def _fault(self, kind: str, pids: dict[str, int]) -> None:
        held = {r["worker"] for model in self.models.values() for r in model.replicas}
        victims = sorted(a for a in pids if a in held) or sorted(pids)
        victim = self.random.choice(victims)
        begun = time.monotonic()
        try:
            if kind == "kill":
                os.kill(pids[victim], signal.SIGKILL)
            elif kind == "freeze":
                os.kill(pids[victim], signal.SIGSTOP)
                try:
                    self.stop.wait(HEALTH_CHECK_TIMEOUT * 2.5)
                finally:
                    os.kill(pids[victim], signal.SIGCONT)
            elif kind == "retire":
                retire = self.cluster.client.retire_workers
                if _bounded(lambda: retire([victim], close_workers=True) or True, 90) is None:
                    self.faults["retire (no answer within 90 s)"] += 1
            else:
                self.cluster.add_worker()
        except Exception as err:  # noqa: BLE001 - the fault itself failed: say so
            print(f"fault {kind} on {victim} failed: {err}", file=sys.stderr)
        self.faults[kind] += 1
        self.windows.append((kind, begun, time.monotonic() + SETTLE))

    def _restart_scheduler(self) -> None:
        begun = time.monotonic()
        self.cluster.restart_scheduler()
        probe = self.models["echo-0"]

        def answers() -> bool:
            try:
                probe.run("probe")
                return True
            except Exception:  # noqa: BLE001 - not yet
                return False

        _wait_for(answers, 120, "the models to answer after the scheduler restart")
        self.restart = (begun, time.monotonic() + SETTLE)
        self.faults["scheduler restart"] += 1

    # -- the run -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.setup()
        started = time.monotonic()
        threads = [
            threading.Thread(target=self.caller, args=(i,), daemon=True) for i in range(CALLERS)
        ]
        threads.append(threading.Thread(target=self.trainer, daemon=True))
        faults = threading.Thread(target=self.faults_loop, args=(started,), daemon=True)
        for thread in [*threads, faults]:
            thread.start()
        self.stop.wait(self.duration)
        self.stop.set()
        faults.join(120)
        for thread in threads:
            thread.join(CALL_TIMEOUT + 10)
        ended = time.monotonic()
        return self.report(started, ended)

    def report(self, started: float, ended: float) -> dict[str, Any]:
        rss_end = psutil.Process().memory_info().rss
        in_restart = self._in(self.restart and [("restart", *self.restart)] or [])
        in_fault = self._in(self.windows)
        calls = list(self.calls)
        failed = [c for c in calls if c[2] is not None]
        failed_outside = [c for c in failed if not in_restart(c[0], c[1])]
        latencies_in = [
            c[1] for c in calls if c[2] is None and (in_fault(*c[:2]) or in_restart(*c[:2]))
        ]
        latencies_out = [
            c[1] for c in calls if c[2] is None and not (in_fault(*c[:2]) or in_restart(*c[:2]))
        ]
        trainings = self._trainings(in_restart)
        unserved, served_late = self._unserved()
        left_over = self._close_and_count_left_over()
        return {
            "minutes": round((ended - started) / 60, 2),
            "faults": dict(self.faults),
            "calls_ok": len(calls) - len(failed),
            "calls_failed": len(failed),
            "calls_failed_outside_restart": len(failed_outside),
            "failures": collections.Counter(c[2].split(":")[1].strip() for c in failed).most_common(
                5
            ),
            "failure_examples": [c[2] for c in failed_outside[:5]],
            "calls_over_bound": sum(c[1] > LATENCY_BOUND for c in calls),
            "latency_bound_s": LATENCY_BOUND,
            "p50_ms_in_faults": _ms(percentile(latencies_in, 50)),
            "p99_ms_in_faults": _ms(percentile(latencies_in, 99)),
            "p50_ms_outside": _ms(percentile(latencies_out, 50)),
            "p99_ms_outside": _ms(percentile(latencies_out, 99)),
            "max_s": round(max((c[1] for c in calls), default=0), 2),
            **trainings,
            "models_unserved": unserved,
            "models_served_late_s": served_late,
            **left_over,
            "caller_rss_drift_mb": round((rss_end - self.rss_start) / 2**20, 1),
            "load": os.getloadavg()[0],
        }

    @staticmethod
    def _in(windows: list) -> Any:
        """Whether a call (its start, its seconds) overlapped one of the windows."""
        return lambda t, took=0.0: any(start <= t + took and t <= end for _, start, end in windows)

    def _trainings(self, in_restart: Any) -> dict[str, Any]:
        from caikit.core.data_model import JobStatus

        deadline = time.monotonic() + 90
        statuses: dict[str, int] = collections.Counter()
        reasons: collections.Counter = collections.Counter()
        stuck = stuck_outside = 0
        for submitted, future, _ in self.trainings:
            while True:
                try:
                    info = future.get_info()
                except Exception as err:  # noqa: BLE001 - counted as errored with its reason
                    statuses["ERRORED"] += 1
                    reasons[f"{type(err).__name__}"] += 1
                    break
                if info.status in (JobStatus.COMPLETED, JobStatus.ERRORED, JobStatus.CANCELED):
                    statuses[info.status.name] += 1
                    if info.status is JobStatus.ERRORED:
                        reasons[_reason(info.errors)] += 1
                    break
                if time.monotonic() > deadline:
                    stuck += 1
                    stuck_outside += not in_restart(submitted)
                    break
                time.sleep(0.2)
        return {
            "trainings_submitted": len(self.trainings) + len(self.refused),
            "trainings_refused_at_submit": len(self.refused),
            "trainings_completed": statuses["COMPLETED"],
            "trainings_errored": statuses["ERRORED"],
            "training_error_reasons": reasons.most_common(4),
            "trainings_stuck": stuck,
            "trainings_stuck_outside_restart": stuck_outside,
        }

    def _unserved(self) -> tuple[list[str], dict[str, float]]:
        """Models no call reaches once the faults have stopped: each gets its last call, and
        one that fails it (its replicas still being re-placed after the last fault) two more
        tries, each within call_timeout. Also how long the late ones took to answer."""
        unserved, late = [], {}
        for name, model in self.models.items():
            started = time.monotonic()
            for attempt in range(3):
                try:
                    model.run("last")
                except Exception as err:  # noqa: BLE001 - unserved, with why
                    why = f"{name}: {type(err).__name__}: {str(err)[:300]}"
                else:
                    if attempt:
                        late[name] = round(time.monotonic() - started, 1)
                    break
            else:
                unserved.append(why)
        return unserved, late

    def _close_and_count_left_over(self) -> dict[str, int]:
        from caikit_dask.loading.scheduler.books import MEMORY, PLACEMENTS

        for model in self.models.values():
            model.close()
        client = self.cluster.client

        def left() -> tuple[int, int]:
            actors = client.run(lambda dask_worker: len(dask_worker.state.actors))
            books = client.run_on_scheduler(
                lambda dask_scheduler: sum(
                    len(keys)
                    for book in (PLACEMENTS, MEMORY)
                    for keys in (dask_scheduler.task_metadata.get(book) or {}).values()
                )
            )
            return sum(actors.values()), books

        deadline = time.monotonic() + 30
        actors, books = left()
        while (actors or books) and time.monotonic() < deadline:
            time.sleep(0.5)
            actors, books = left()
        return {"actors_left_over": actors, "bookings_left_over": books}

    def close(self) -> None:
        from caikit_dask.connection import DaskConnection

        DaskConnection.close_all()
        self.cluster.close()


def _reason(errors: list) -> str:
    """An error's message without the ids in it, so alike reasons count together."""
    text = str(errors[0]) if errors else "?"
    text = re.sub(r"\S*[0-9a-f]{8}-[0-9a-f-]{27,}\S*", "<id>", text)
    return re.sub(r"tcp://\S+", "<worker>", text)[:90]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def print_table(results: dict[str, Any]) -> None:
    rows = [
        (
            "run",
            f"{results['minutes']} min, faults {results['faults']}, load {results['load']:.1f}",
        ),
        (
            "calls ok / failed / over bound",
            f"{results['calls_ok']} / {results['calls_failed']} "
            f"({results['calls_failed_outside_restart']} outside the scheduler restart) / "
            f"{results['calls_over_bound']} (> {results['latency_bound_s']:.0f} s)",
        ),
        (
            "p50 / p99 outside faults",
            f"{results['p50_ms_outside']} / {results['p99_ms_outside']} ms",
        ),
        (
            "p50 / p99 in fault windows",
            f"{results['p50_ms_in_faults']} / {results['p99_ms_in_faults']} ms",
        ),
        ("slowest call", f"{results['max_s']} s"),
        (
            "trainings submitted / completed / errored / stuck",
            f"{results['trainings_submitted']} / {results['trainings_completed']} / "
            f"{results['trainings_errored']} / {results['trainings_stuck']} "
            f"({results['trainings_stuck_outside_restart']} outside the restart; "
            f"{results['trainings_refused_at_submit']} refused at submit)",
        ),
        ("training error reasons", str(results["training_error_reasons"])),
        ("models unserved at the end", str(results["models_unserved"] or "none")),
        (
            "models that answered only after retries (s)",
            str(results["models_served_late_s"] or "none"),
        ),
        (
            "actors / bookings left over",
            f"{results['actors_left_over']} / {results['bookings_left_over']}",
        ),
        ("caller RSS drift", f"{results['caller_rss_drift_mb']} MB"),
    ]
    width = max(len(label) for label, _ in rows)
    print("== chaos ==")
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    if results["failure_examples"]:
        print("failed calls outside the restart, e.g.:", *results["failure_examples"], sep="\n  ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="where to write the results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="caikit-dask-chaos-") as tmp:
        run = Run(args.minutes, args.seed, Path(tmp))
        try:
            results = run.run()
        finally:
            run.close()
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    ok = (
        results["calls_failed_outside_restart"] == 0
        and results["trainings_stuck_outside_restart"] == 0
        and results["actors_left_over"] == 0
        and results["bookings_left_over"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
