"""Trainings of ``world_size`` ranks on the session's LocalCluster (2 worker processes, GPU=1
each), with a module that needs no torch: the environment each rank sees, one status for the
whole gang, a failing rank, cancel, two gangs competing for the same workers, retries,
logs and progress per rank, and too few workers."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import dask
import pytest
from caikit.core.data_model import JobStatus
from cluster_support import poll
from gang_modules import RANK_PROBE_MODULE_ID, VARIABLES, RankProbe

from caikit_dask import DaskModelTrainer
from caikit_dask.errors import DaskBackendError, RankFailed
from caikit_dask.example import TextClassifier
from caikit_dask.progress import latest_progress
from caikit_dask.training.on_worker import is_running_on_worker


def gang_trainer(connection, name, **config):
    return DaskModelTrainer(
        {"connection": connection, "resources": {"GPU": 1}, "world_size": 2, **config}, name
    )


def ranks_running(observer, training_id):
    return sum(observer.run(is_running_on_worker, training_id).values())


def worker_environments(observer):
    return observer.run(lambda: {name: os.environ.get(name) for name in VARIABLES})


def test_each_rank_gets_the_torch_distributed_environment(connection, observer, local_cluster):
    before = worker_environments(observer)
    future = gang_trainer(connection, "gang-env").train(RankProbe, steps=2)
    future.wait(60)
    info = future.get_info()
    assert info.status is JobStatus.COMPLETED, info.errors
    workers = future.training.workers
    assert sorted(workers) == sorted(local_cluster.scheduler_info["workers"])
    seen = future.load().seen  # rank 0's model
    assert seen["RANK"] == "0" and seen["WORLD_SIZE"] == "2"
    assert seen["LOCAL_RANK"] == "0" and seen["LOCAL_WORLD_SIZE"] == "2"  # both on 127.0.0.1
    assert seen["MASTER_ADDR"] == "127.0.0.1" and int(seen["MASTER_PORT"]) > 0
    assert future.training.worker == workers[0]
    lines = future.logs()
    rank1 = [line for line in lines if "[rank 1] gang.probe: rank 1 environment" in line]
    assert len(rank1) == 1, lines
    rank1_env = json.loads(rank1[0].split("environment ", 1)[1])
    assert rank1_env == {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": seen["MASTER_PORT"],
    }
    assert worker_environments(observer) == before  # each worker process as it was


def test_a_new_training_gets_a_new_master_port(connection):
    trainer = gang_trainer(connection, "gang-ports")
    ports = set()
    for _ in range(2):
        future = trainer.train(RankProbe, steps=1)
        future.wait(60)
        ports.add(future.load().seen["MASTER_PORT"])
    assert len(ports) == 2


def test_world_size_per_module_and_per_call(connection):
    # One after the other: a rank's variables are process-wide while it trains, so a task
    # running beside it in the same worker process would see them too.
    by_module = DaskModelTrainer(
        {"connection": connection, "module_world_size": {RANK_PROBE_MODULE_ID: 2}}, "gang-mod"
    ).train(RankProbe, steps=1)
    by_module.wait(60)
    plain = DaskModelTrainer({"connection": connection}, "gang-call")
    with dask.annotate(world_size=2):
        by_call = plain.train(RankProbe, steps=1)
    by_call.wait(60)
    single = plain.train(RankProbe, steps=1)
    single.wait(60)
    for future in (by_module, by_call, single):
        assert future.get_info().status is JobStatus.COMPLETED, future.get_info().errors
    assert by_module.load().seen["WORLD_SIZE"] == by_call.load().seen["WORLD_SIZE"] == "2"
    assert single.load().seen["WORLD_SIZE"] is None  # world_size 1: nothing set
    with pytest.raises(ValueError, match="world_size"), dask.annotate(world_size=0):
        plain.train(RankProbe, steps=1)


def test_queued_while_a_worker_is_taken_then_all_ranks_start_together(connection, observer):
    blocker_trainer = DaskModelTrainer(
        {"connection": connection, "resources": {"GPU": 1}}, "gang-blocker"
    )
    blocker = blocker_trainer.train(TextClassifier, epochs=100_000, sleep_per_epoch=0.02)
    poll(lambda: blocker.get_info().status is JobStatus.RUNNING, 30, what="the blocker to run")
    gang = gang_trainer(connection, "gang-queued").train(RankProbe, steps=2)
    try:
        time.sleep(1.0)  # the free worker must not start a rank alone meanwhile
        assert gang.get_info().status is JobStatus.QUEUED
        assert ranks_running(observer, gang.id) == 0
    finally:
        blocker.cancel()
    gang.wait(60)
    assert gang.get_info().status is JobStatus.COMPLETED, gang.get_info().errors
    seen = gang.load().seen
    assert seen["started"] >= blocker.get_info().completion_time.timestamp() - 1


def test_a_failing_rank_fails_the_training_and_stops_the_others(connection, observer):
    future = gang_trainer(connection, "gang-fail").train(
        RankProbe, steps=2000, step_seconds=0.02, fail_rank=1, fail_at_step=20
    )
    future.wait(60)
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    error = info.errors[0]
    assert isinstance(error, RankFailed)
    assert error.rank == 1 and error.worker == future.training.workers[1]
    assert "rank 1" in str(error) and error.worker in str(error)
    assert "ValueError: rank 1 gave up at step 20" in str(error)
    assert isinstance(error.rank_error, ValueError)
    # Rank 0 (2000 steps of 20 ms) was stopped, not left to finish: its worker is free.
    assert ranks_running(observer, future.id) == 0
    assert not any("rank 0 step 2000/2000" in line for line in future.logs())


def test_cancel_stops_every_rank_and_frees_their_workers(connection, observer):
    trainer = gang_trainer(connection, "gang-cancel")
    future = trainer.train(RankProbe, steps=100_000, step_seconds=0.02)
    poll(lambda: future.get_info().status is JobStatus.RUNNING, 30, what="the gang to run")
    poll(lambda: ranks_running(observer, future.id) == 2, 10, what="both ranks' threads")
    future.cancel()
    assert future.get_info().status is JobStatus.CANCELED
    poll(lambda: ranks_running(observer, future.id) == 0, 10, what="both ranks to stop")
    follow_up = trainer.train(RankProbe, steps=1)  # both GPUs are free again
    follow_up.wait(60)
    assert follow_up.get_info().status is JobStatus.COMPLETED, follow_up.get_info().errors


def test_two_gangs_wanting_the_same_workers_run_one_after_the_other(connection):
    trainers = [gang_trainer(connection, f"gang-compete-{i}") for i in range(2)]
    outcomes: list = [None, None]
    start = threading.Barrier(2)

    def train(index):
        start.wait()
        outcomes[index] = trainers[index].train(RankProbe, steps=10, step_seconds=0.05)

    threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for future in outcomes:
        future.wait(90)
        assert future.get_info().status is JobStatus.COMPLETED, future.get_info().errors
    first, second = sorted((f.load().seen for f in outcomes), key=lambda seen: seen["started"])
    assert second["started"] >= first["ended"]  # never interleaved: no deadlock possible


def test_retries_rerun_the_whole_gang(connection, observer, tmp_path):
    future = gang_trainer(connection, "gang-retry", retries=1).train(
        RankProbe, steps=3, fail_rank=1, fail_at_step=2, fail_once_in=str(tmp_path)
    )
    future.wait(60)
    info = future.get_info()
    assert info.status is JobStatus.COMPLETED, info.errors
    lines = future.logs()
    assert sum("rank 1 environment" in line for line in lines) == 2  # the gang ran twice
    assert sum("rank 1 gave up" in line for line in lines) == 1
    assert sum("rank 1 step 3/3" in line for line in lines) == 1
    starts = [
        msg
        for _, msg in observer.get_events("caikit-dask-training")
        if msg.get("key") == future.training.key and msg.get("state") == "running"
    ]
    assert len(starts) == 2 and all(len(msg["workers"]) == 2 for msg in starts)


def test_progress_follows_rank_0_by_default(connection):
    future = gang_trainer(connection, "gang-progress").train(RankProbe, steps=3)
    future.wait(60)
    assert latest_progress(future).message == "rank 0"
    assert latest_progress(future, rank=1).message == "rank 1"


def test_too_few_workers_fails_at_the_call_or_after_resource_timeout(connection):
    trainer = gang_trainer(connection, "gang-3", world_size=3, resource_timeout=0)
    with pytest.raises(DaskBackendError, match=r"needs 3 worker processes .* and 2 do"):
        trainer.train(RankProbe, steps=1)
    waiting = gang_trainer(connection, "gang-3b", world_size=3, resource_timeout="1s")
    started = time.monotonic()
    future = waiting.train(RankProbe, steps=1)
    future.wait(20)
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    assert "resource_timeout=1s" in str(info.errors[0]) and "and 2 do" in str(info.errors[0])
    assert time.monotonic() - started < 10


ANOTHER_PROCESS = textwrap.dedent(
    """
    import json, sys
    from caikit_dask import DaskModelTrainer
    trainer = DaskModelTrainer({"connection": {"address": sys.argv[1]}}, "default")
    listed = {future.id: future.get_info().status.name for future in trainer.list_trainings()}
    future = trainer.get_model_future(sys.argv[2])
    seen = {
        "listed": listed.get(sys.argv[2]),
        "status": future.get_info().status.name,
        "workers": future.training.workers,
        "rank_lines": sorted({l.split("] ")[0][-6:] for l in future.logs() if "[rank" in l}),
    }
    trainer.delete_training(sys.argv[2])
    print(json.dumps(seen))
    """
)


def test_another_process_lists_reads_and_deletes_a_gang(connection, observer, local_cluster):
    future = gang_trainer(connection, "gang-elsewhere").train(
        RankProbe, steps=100_000, step_seconds=0.02
    )
    poll(lambda: future.get_info().status is JobStatus.RUNNING, 30, what="the gang to run")
    poll(lambda: ranks_running(observer, future.id) == 2, 10, what="both ranks")
    done = subprocess.run(
        [sys.executable, "-c", ANOTHER_PROCESS, local_cluster.scheduler_address, future.id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "listed": "RUNNING",
        "status": "RUNNING",
        "workers": future.training.workers,
        "rank_lines": ["rank 0", "rank 1"],
    }
    poll(lambda: ranks_running(observer, future.id) == 0, 15, what="the deleted gang to stop")
    future.wait(15)
    assert future.get_info().status is JobStatus.CANCELED


def _hold_gpu(seconds, marker):
    """A GPU task that keeps running after its future is cancelled (Dask cannot stop it)."""
    from pathlib import Path

    Path(marker).touch()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)


def test_ranks_that_cannot_all_start_give_their_workers_back_and_queue_again(
    connection, observer, tmp_path
):
    """The scheduler forgets a cancelled task at once, its worker does not: the gang is
    admitted on a GPU the worker still holds, its other rank waits at most the start
    timeout, and the gang queues again until the GPU is really free."""
    import dask.config

    [taken, _] = sorted(observer.scheduler_info(n_workers=-1)["workers"])
    marker = tmp_path / "holding"
    holder = observer.submit(
        _hold_gpu, 4, str(marker), resources={"GPU": 1}, workers=[taken], pure=False
    )
    poll(marker.exists, 30, what="the GPU to be held")
    observer.cancel(holder, force=True)
    observer.run(dask.config.set, {"caikit_dask.gang-start-timeout": "1s"})
    try:
        started = time.monotonic()
        future = gang_trainer(connection, "gang-restart").train(RankProbe, steps=1)
        future.wait(60)
        took = time.monotonic() - started
    finally:
        observer.run(dask.config.set, {"caikit_dask.gang-start-timeout": "60s"})
    assert future.get_info().status is JobStatus.COMPLETED, future.get_info().errors
    restarts = [line for line in future.logs() if "did not all start" in line]
    assert restarts and "did not start within 1s" in restarts[0], future.logs()
    assert took >= 3  # it ran once the held GPU was free
