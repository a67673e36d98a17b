"""Real Dask for the tests: an in-process-managed LocalCluster with worker processes,
and ``dask scheduler`` / ``dask worker`` subprocesses where a fault is injected."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

import caikit_dask
from caikit_dask.connection import DaskConnection

TESTS_DIR = Path(__file__).parent
REPO_DIR = TESTS_DIR.parent


def _worker_env() -> dict[str, str]:
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


@pytest.fixture(scope="session", autouse=True)
def _close_connections():
    yield
    DaskConnection.close_all()


@pytest.fixture(scope="session")
def local_cluster():
    """Two worker processes, each declaring GPU=1 (a resource label, no real GPU)."""
    os.environ["PYTHONPATH"] = _worker_env()["PYTHONPATH"]
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        resources={"GPU": 1},
    )
    yield cluster
    cluster.close()


@pytest.fixture
def connection(local_cluster):
    return {"address": local_cluster.scheduler_address, "timeout": "20s"}


@pytest.fixture(scope="session")
def observer(local_cluster):
    """A separate client for looking at the cluster from outside the backend."""
    with Client(local_cluster.scheduler_address, set_as_default=False) as client:
        yield client


def actor_keys_on_workers(client: Client) -> set[str]:
    """Keys of every actor instance the workers hold right now."""
    keys = client.run(lambda dask_worker: [str(key) for key in dask_worker.state.actors])
    return {key for worker_keys in keys.values() for key in worker_keys}


class ProcessCluster:
    """``dask scheduler`` and ``dask worker`` as separate OS processes on 127.0.0.1."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.scheduler_file = tmp_path / "scheduler.json"
        self.workers: dict[str, subprocess.Popen] = {}
        self.scheduler = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
            ],
            env=_worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "scheduler.log", "wb"),  # noqa: SIM115
        )
        poll(self.scheduler_file.exists, 30, what="scheduler file")
        self.address = poll(
            lambda: json.loads(self.scheduler_file.read_text() or "{}").get("address"), 30
        )
        self.client = Client(self.address, set_as_default=False, timeout=20)

    def add_worker(self, name: str, resources: str | None = None, prefix: list[str] | None = None):
        args = [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            self.address,
            "--host",
            "127.0.0.1",
            "--nthreads",
            "2",
            "--no-nanny",
            "--no-dashboard",
            "--name",
            name,
            "--death-timeout",
            "60",
        ]
        if resources:
            args += ["--resources", resources]
        self.workers[name] = subprocess.Popen(
            (prefix or []) + args,
            env=_worker_env(),
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

    def worker_name_at(self, address: str) -> str:
        return {a: n for n, a in self.worker_names().items()}[address]

    def close(self) -> None:
        self.client.close()
        for process in [*self.workers.values(), self.scheduler]:
            process.terminate()
        for process in [*self.workers.values(), self.scheduler]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def process_cluster(tmp_path):
    cluster = ProcessCluster(tmp_path)
    yield cluster
    DaskConnection.close_all()
    cluster.close()


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory):
    """A small example model saved to disk (trained in-process)."""
    from caikit_dask.example import TextClassifier

    path = tmp_path_factory.mktemp("models") / "text-classifier"
    TextClassifier.train(epochs=30).save(str(path))
    return str(path)


@pytest.fixture
def collect_garbage():
    yield gc.collect
    gc.collect()


__all__ = ["caikit_dask", "poll", "actor_keys_on_workers", "ProcessCluster"]
