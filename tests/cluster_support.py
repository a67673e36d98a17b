"""Helpers shared by the tests: polling with a deadline, concurrent callers, and Dask as
separate processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from distributed import Client

TESTS_DIR = Path(__file__).parent
REPO_DIR = TESTS_DIR.parent


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIR), str(REPO_DIR), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


def poll(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_in_threads(target, count: int, join_timeout: float = 60) -> list:
    """Start ``count`` threads at once, each calling ``target(index)``.

    Returns each thread's (result or exception, seconds), or None for a thread still
    running after ``join_timeout``: a hung call.
    """
    outcomes: list = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        started = time.monotonic()
        try:
            value = target(index)
        except Exception as err:  # noqa: BLE001 - returned to the test
            value = err
        outcomes[index] = (value, time.monotonic() - started)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + join_timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return outcomes


def unpickled_without_caikit_dask(value, show: str) -> str:
    """What a fresh Python that cannot import caikit_dask prints of ``show`` (an expression
    of ``obj``) after unpickling ``value``: whether it travels by value to a scheduler
    that has no caikit-dask installed."""
    import cloudpickle

    script = (
        "import pickle, sys; sys.modules['caikit_dask'] = None; "
        f"obj = pickle.loads(sys.stdin.buffer.read()); print({show})"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=cloudpickle.dumps(value),
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


def calls_until(model, stop: threading.Event, labels: list, text: str):
    """A caller for ``run_in_threads``: ``model.run(text)`` until ``stop`` is set, keeping
    each answer's label in ``labels``; returns the failures it met."""

    def call_until_stopped(_index):
        failures = []
        while not stop.is_set():
            try:
                labels.append(model.run(text).label)
            except Exception as err:  # noqa: BLE001 - every failure is a test failure
                failures.append(err)
        return failures

    return call_until_stopped


def booked_keys(client: Client) -> dict[str, set[str]]:
    """The actor keys the scheduler's books hold per worker (placements and memory)."""
    from caikit_dask.loading.scheduler.books import MEMORY, PLACEMENTS

    booked: dict[str, set[str]] = {}
    for book in (PLACEMENTS, MEMORY):
        for worker, keys in (client.get_metadata([book], None) or {}).items():
            booked.setdefault(worker, set()).update(keys)
    return booked


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP a process, and SIGCONT it on the way out whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def actor_keys_on_workers(client: Client) -> set[str]:
    """Keys of every actor instance the workers hold right now."""
    keys = client.run(lambda dask_worker: [str(key) for key in dask_worker.state.actors])
    return {key for worker_keys in keys.values() for key in worker_keys}


class ProcessCluster:
    """``dask scheduler`` and ``dask worker`` as separate OS processes on 127.0.0.1."""

    def __init__(
        self, tmp_path: Path, http_port: int | None = None, scheduler_env: dict | None = None
    ):
        """``http_port``: serve the scheduler's HTTP routes there (with ``scheduler_env``,
        e.g. the routes a manifest turns on); otherwise no dashboard."""
        self.tmp_path = tmp_path
        self.http_port, self.scheduler_env = http_port, scheduler_env or {}
        self.scheduler_file = tmp_path / "scheduler.json"
        self.workers: dict[str, subprocess.Popen] = {}
        self.scheduler = self._start_scheduler("0")
        self.address = poll(
            lambda: (
                self.scheduler_file.exists()
                and json.loads(self.scheduler_file.read_text() or "{}").get("address")
            ),
            30,
            what="scheduler file",
        )
        self.client = Client(self.address, set_as_default=False, timeout=20)

    def _start_scheduler(self, port: str) -> subprocess.Popen:
        self.scheduler_file.unlink(missing_ok=True)
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                *(
                    ["--dashboard-address", f"127.0.0.1:{self.http_port}"]
                    if self.http_port
                    else ["--no-dashboard"]
                ),
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            env={**worker_env(), **self.scheduler_env},
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp_path / "scheduler.log", "ab"),  # noqa: SIM115
        )

    def kill_scheduler(self) -> None:
        """kill -9 the scheduler; its workers shut themselves down when they notice."""
        os.kill(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait(10)

    def restart_scheduler(self) -> None:
        """A new scheduler on the same address (as a restarted pod behind a Service)."""
        self.scheduler = self._start_scheduler(self.address.rsplit(":", 1)[1])
        poll(self.scheduler_file.exists, 30, what="restarted scheduler")
        poll(lambda: self.client.status == "running", 30, what="observer reconnect")
        for name, process in list(self.workers.items()):
            if process.poll() is not None:
                del self.workers[name]

    def worker_extra_args(self) -> list[str]:
        """More ``dask worker`` arguments (subclasses add e.g. TLS certificates)."""
        return []

    def add_worker(
        self,
        name: str,
        resources: str | None = None,
        prefix: list[str] | None = None,
        memory_limit: str | None = None,
        nanny: bool = False,
    ):
        """``nanny``: a nanny process restarts the worker when it dies (as in production);
        ``worker_pid`` is then the worker's own process."""
        args = [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            self.address,
            "--host",
            "127.0.0.1",
            "--nthreads",
            "2",
            "--nanny" if nanny else "--no-nanny",
            "--no-dashboard",
            "--name",
            name,
            "--death-timeout",
            "60",
            *self.worker_extra_args(),
        ]
        if resources:
            args += ["--resources", resources]
        if memory_limit:
            args += ["--memory-limit", memory_limit]
        self.workers[name] = subprocess.Popen(
            (prefix or []) + args,
            env=worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp_path / f"worker-{name}.log", "wb"),  # noqa: SIM115
        )
        poll(lambda: name in self.worker_names(), 60, what=f"worker {name}")
        return self.worker_address(name)

    def worker_names(self) -> dict[str, str]:
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return {w["name"]: address for address, w in info.items()}

    def worker_address(self, name: str) -> str:
        return self.worker_names()[name]

    def kill_worker(self, name: str) -> None:
        """kill -9: no goodbye to the scheduler."""
        process = self.workers.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def worker_pid(self, name: str) -> int:
        """The pid of the worker process itself (not its nanny)."""
        address = self.worker_address(name)
        return self.client.run(os.getpid, workers=[address])[address]

    def worker_name_at(self, address: str) -> str:
        return {a: n for n, a in self.worker_names().items()}[address]

    def close(self) -> None:
        try:
            self.close_client()
        finally:
            self.stop_processes()

    def close_client(self) -> None:
        self.client.close(timeout=3)

    def stop_processes(self) -> None:
        """SIGTERM every process, SIGKILL what is still there after a short grace."""
        for process in [*self.workers.values(), self.scheduler]:
            process.terminate()
        for process in [*self.workers.values(), self.scheduler]:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@contextlib.contextmanager
def process_cluster(
    tmp_path: Path, workers: dict[str, dict], python_path: Iterable[str] = ()
) -> Iterator[ProcessCluster]:
    """A ProcessCluster with the named workers (``add_worker`` kwargs each), closed on exit.

    ``python_path`` goes first on the workers' PYTHONPATH (what they must import).
    """
    with pytest.MonkeyPatch.context() as patch:
        paths = [*map(str, python_path), os.environ.get("PYTHONPATH", "")]
        patch.setenv("PYTHONPATH", os.pathsep.join(paths).strip(os.pathsep))
        cluster = ProcessCluster(tmp_path)
        try:
            for name, options in workers.items():
                cluster.add_worker(name, **options)
        except BaseException:
            cluster.close()
            raise
    try:
        yield cluster
    finally:
        cluster.close()
