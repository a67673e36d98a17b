"""Real Dask for the tests: a LocalCluster with worker processes, and ``dask scheduler`` /
``dask worker`` subprocesses where a fault is injected."""

from __future__ import annotations

import gc
import os

import pytest
from cluster_support import ProcessCluster, worker_env
from distributed import Client, LocalCluster

from caikit_dask.connection import DaskConnection


@pytest.fixture(scope="session", autouse=True)
def _close_connections():
    yield
    DaskConnection.close_all()


@pytest.fixture(scope="session")
def local_cluster():
    """Two worker processes, each declaring GPU=1 (a resource label, no real GPU)."""
    os.environ["PYTHONPATH"] = worker_env()["PYTHONPATH"]
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
