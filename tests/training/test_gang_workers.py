"""Gang trainings as workers come and go: three ranks on three worker processes, a rank's
worker killed (-9) with and without retries, the driver's worker killed, and an adaptive
cluster asked for the workers a gang lacks. ``dask scheduler`` / ``dask worker`` run as
separate processes (GPU=1 each) where a worker is killed."""

import time

import pytest
from caikit.core.data_model import JobStatus
from cluster_support import ProcessCluster, poll, worker_env
from distributed import LocalCluster
from gang_modules import RankProbe

from caikit_dask import DaskModelTrainer
from caikit_dask.connection import DaskConnection
from caikit_dask.errors import DaskBackendError, RankFailed
from caikit_dask.training.on_worker import is_running_on_worker

pytestmark = pytest.mark.slow


@pytest.fixture
def three_workers(tmp_path):
    cluster = ProcessCluster(tmp_path)
    try:
        for name in "abc":
            cluster.add_worker(name, resources="GPU=1")
        yield cluster
    finally:
        DaskConnection.close_all()
        cluster.close()


def trainer(cluster, name, **config):
    return DaskModelTrainer(
        {
            "connection": {"address": cluster.address, "timeout": "20s"},
            "resources": {"GPU": 1},
            "world_size": 2,
            **config,
        },
        name,
    )


def driver_worker(cluster, future):
    key = future.training.key

    def where(dask_scheduler):
        task = dask_scheduler.tasks.get(key)
        return task.processing_on.address if task is not None and task.processing_on else None

    return cluster.client.run_on_scheduler(where)


def ranks_running(cluster, training_id):
    return sum(cluster.client.run(is_running_on_worker, training_id).values())


def test_three_ranks_on_three_worker_processes(three_workers):
    future = trainer(three_workers, "three", world_size=3).train(RankProbe, steps=2)
    future.wait(60)
    assert future.get_info().status is JobStatus.COMPLETED, future.get_info().errors
    assert len(set(future.training.workers)) == 3
    seen = future.load().seen
    assert (seen["WORLD_SIZE"], seen["LOCAL_WORLD_SIZE"]) == ("3", "3")
    lines = future.logs()
    for rank in range(3):
        assert any(f"[rank {rank}] gang.probe: rank {rank} step 2/2" in line for line in lines)


def test_a_rank_whose_worker_is_killed_fails_the_training_and_stops_the_others(three_workers):
    future = trainer(three_workers, "killed").train(RankProbe, steps=100_000, step_seconds=0.02)
    poll(lambda: future.get_info().status is JobStatus.RUNNING, 60, what="the gang to run")
    workers, driver = future.training.workers, driver_worker(three_workers, future)
    rank = next(rank for rank, worker in enumerate(workers) if worker != driver)
    other = 1 - rank
    killed_at = time.monotonic()
    three_workers.kill_worker(three_workers.worker_name_at(workers[rank]))
    future.wait(60)
    noticed = time.monotonic() - killed_at
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    error = info.errors[0]
    assert isinstance(error, RankFailed) and error.rank == rank and error.worker == workers[rank]
    assert f"rank {rank}" in str(error) and "died" in str(error)
    poll(lambda: ranks_running(three_workers, future.id) == 0, 10, what="the other rank to stop")
    assert not any(f"rank {other} step 100000" in line for line in future.logs())
    print(f"ERRORED {noticed:.2f}s after the kill")


def test_retries_rerun_the_gang_after_a_rank_worker_dies(three_workers):
    future = trainer(three_workers, "killed-retry", retries=1).train(
        RankProbe, steps=60, step_seconds=0.05
    )
    poll(lambda: future.get_info().status is JobStatus.RUNNING, 60, what="the gang to run")
    workers, driver = future.training.workers, driver_worker(three_workers, future)
    victim = next(worker for worker in workers if worker != driver)
    three_workers.kill_worker(three_workers.worker_name_at(victim))
    future.wait(120)
    info = future.get_info()
    assert info.status is JobStatus.COMPLETED, info.errors
    assert victim not in future.training.workers  # the rerun found the two left
    assert future.load().seen["WORLD_SIZE"] == "2"


def test_the_drivers_worker_killed_stops_the_ranks(three_workers):
    future = trainer(three_workers, "driver-killed").train(
        RankProbe, steps=100_000, step_seconds=0.02
    )
    poll(lambda: future.get_info().status is JobStatus.RUNNING, 60, what="the gang to run")
    driver = driver_worker(three_workers, future)
    three_workers.kill_worker(three_workers.worker_name_at(driver))
    future.wait(60)
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    assert driver in str(info.errors[0]) and "died" in str(info.errors[0])
    poll(lambda: ranks_running(three_workers, future.id) == 0, 15, what="the ranks to stop")


def test_an_adaptive_cluster_is_asked_for_the_workers_a_gang_lacks(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        resources={"GPU": 1},
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    cluster.adapt(minimum=1, maximum=3, interval="100ms", wait_count=20)
    try:
        started = time.monotonic()
        future = DaskModelTrainer(
            {
                "connection": {"address": cluster.scheduler_address},
                "resources": {"GPU": 1},
                "world_size": 3,
                "resource_timeout": "60s",
            },
            "adaptive",
        ).train(RankProbe, steps=1)
        future.wait(90)
        info = future.get_info()
        assert info.status is JobStatus.COMPLETED, info.errors
        assert len(set(future.training.workers)) == 3
        print(f"3 ranks ran {time.monotonic() - started:.1f}s after train() on a 1-worker cluster")
    finally:
        DaskConnection.close_all()
        cluster.close()


def test_a_fixed_cluster_that_lacks_workers_fails_after_resource_timeout(three_workers):
    future = trainer(three_workers, "lacking", world_size=4, resource_timeout="2s").train(
        RankProbe, steps=1
    )
    future.wait(30)
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    assert isinstance(info.errors[0], DaskBackendError)
    assert "needs 4 worker processes" in str(info.errors[0]) and "and 3 do" in str(info.errors[0])
