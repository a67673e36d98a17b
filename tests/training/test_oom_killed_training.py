"""A training that kills its worker (as the kernel's OOM killer does) kills one worker.

Dask would run the task again on the next worker, up to ``allowed-failures`` (3) times:
four workers killed in turn, with every model they held. A training whose worker died runs
again only as often as ``retries`` asks; an exit with 137 or signal 9 ends it with caikit's
own ``MemoryError("Training process died with OOM error!")``, another death says how the
worker ended. Worker processes here have nannies (a LocalCluster), which restart them and
log their exit status.
"""

from __future__ import annotations

import os

import pytest
from caikit.core.data_model import JobStatus
from cluster_support import poll
from distributed import Client, LocalCluster
from parity_testlib import OomTrainer

from caikit_dask import DaskModelTrainer
from caikit_dask.training import events
from caikit_dask.training.worker_death import OOM_MESSAGE

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(local_cluster):  # local_cluster: the workers' PYTHONPATH is set; one per test,
    # so no test waits on the restarts of workers an earlier one killed
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


def worker_pids(client: Client) -> set[int]:
    return set(client.run(os.getpid).values())


def runs_of(client: Client, key: str) -> list:
    return client.get_metadata([events.RUNS_METADATA, key], default=None) or []


@pytest.mark.parametrize(
    ("exit_code", "retries", "runs", "error_type", "says"),
    [
        (137, 0, 1, MemoryError, f"{OOM_MESSAGE} Dask worker"),
        (137, 1, 2, MemoryError, "exited with status 137"),
        (3, 0, 1, RuntimeError, "exited with status 3"),
    ],
)
def test_a_worker_killing_training_runs_once_per_retry(
    cluster, client, exit_code, retries, runs, error_type, says
):
    before = worker_pids(client)
    trainer = DaskModelTrainer(
        {"connection": {"address": cluster.scheduler_address}, "retries": retries}, "oom"
    )
    future = trainer.train(OomTrainer, exit_code=exit_code)
    future.wait(120)
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    [error] = info.errors
    assert isinstance(error, error_type), repr(error)
    assert says in str(error)
    if error_type is MemoryError:
        assert str(error).startswith(OOM_MESSAGE)  # caikit's words first, as callers match
    assert len(runs_of(client, future.training.key)) == runs
    poll(lambda: len(client.scheduler_info()["workers"]) == 2, 60, what="workers restarted")
    replaced = before - worker_pids(client)
    assert len(replaced) == runs, f"{len(replaced)} workers died for {runs} run(s)"


def test_the_run_record_goes_with_the_training(cluster, client):
    trainer = DaskModelTrainer({"connection": {"address": cluster.scheduler_address}}, "oom")
    future = trainer.train(OomTrainer)
    future.wait(120)
    key = future.training.key
    assert runs_of(client, key)
    trainer.delete_training(future.id)
    assert runs_of(client, key) == []
