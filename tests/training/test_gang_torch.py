"""torch.distributed under gang trainings (gloo on CPU; needs torch, so CI's caikit-nlp venv):
DDP on 2 and 3 worker processes with gradients that agree across ranks, a rank failing while
its peers wait in a collective, cancel while a rank waits in one, and a rank's worker killed
(-9) while its peer waits in one. None may leave a rank blocked in a collective."""

import re
import time

import pytest

pytest.importorskip("torch")

from caikit.core.data_model import JobStatus  # noqa: E402
from cluster_support import ProcessCluster, poll, worker_env  # noqa: E402
from ddp_modules import DdpProbe  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from caikit_dask import DaskModelTrainer  # noqa: E402
from caikit_dask.connection import DaskConnection  # noqa: E402
from caikit_dask.errors import RankFailed  # noqa: E402
from caikit_dask.training.on_worker import is_running_on_worker  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def three_workers():
    """Three worker processes, one thread and GPU=1 each (a label: gloo runs on the CPU)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
        patch.setenv("OMP_NUM_THREADS", "1")
        cluster = LocalCluster(
            n_workers=3,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            resources={"GPU": 1},
        )
    with Client(cluster.scheduler_address, set_as_default=False) as observer:
        yield cluster, observer
    DaskConnection.close_all()
    cluster.close(timeout=60)  # three torch processes take a while to stop on busy cores


def trainer(address, name, world_size=2, **config):
    return DaskModelTrainer(
        {
            "connection": {"address": address, "timeout": "20s"},
            "resources": {"GPU": 1},
            "world_size": world_size,
            **config,
        },
        name,
    )


def ranks_running(client, training_id):
    return sum(client.run(is_running_on_worker, training_id).values())


def losses_at_step_1(lines, world_size):
    found = {}
    for line in lines:
        match = re.search(r"rank (\d+) step 1/\d+ loss=([\d.]+)", line)
        if match:
            found[int(match.group(1))] = float(match.group(2))
    assert sorted(found) == list(range(world_size)), lines
    return found


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_gradients_agree_across_ranks(three_workers, world_size):
    cluster, _ = three_workers
    future = trainer(cluster.scheduler_address, f"ddp-{world_size}", world_size).train(
        DdpProbe, steps=5
    )
    future.wait(240)
    info = future.get_info()
    assert info.status is JobStatus.COMPLETED, info.errors
    report = future.load().report  # rank 0's
    assert report["rank"] == 0 and report["world"] == world_size
    assert report["all_reduce"] == sum(range(1, world_size + 1))
    assert report["agreed"] == [True] * 5  # every step: DDP averaged the gradients
    assert report["weights_agreed"]
    losses = losses_at_step_1(future.logs(), world_size)
    assert len(set(losses.values())) == world_size  # each rank trained on its own data


def test_a_rank_failing_while_its_peers_wait_in_a_collective(three_workers):
    cluster, observer = three_workers
    future = trainer(cluster.scheduler_address, "ddp-fail").train(DdpProbe, steps=3, fail_rank=1)
    future.wait(120)
    info = future.get_info()
    assert info.status is JobStatus.ERRORED
    error = info.errors[0]
    assert isinstance(error, RankFailed) and error.rank == 1, error
    assert "ValueError: rank 1 failed before step 1" in str(error)
    # Rank 0 waited in DDP's all-reduce for rank 1: freed when rank 1 ended its group.
    poll(lambda: ranks_running(observer, future.id) == 0, 10, what="rank 0 to stop")


def test_cancel_while_a_rank_waits_in_a_collective(three_workers):
    cluster, observer = three_workers
    future = trainer(cluster.scheduler_address, "ddp-cancel").train(
        DdpProbe, steps=3, hold_rank=1, hold_seconds=600
    )
    poll(
        lambda: any("all_reduce gave" in line for line in future.logs()),
        120,
        what="the process group to be up",
    )
    canceled_at = time.monotonic()
    future.cancel()
    assert future.get_info().status is JobStatus.CANCELED
    poll(lambda: ranks_running(observer, future.id) == 0, 15, what="both ranks to stop")
    print(f"both ranks stopped {time.monotonic() - canceled_at:.2f}s after cancel")
    assert not any("step 1/3" in line for line in future.logs())
    again = trainer(cluster.scheduler_address, "ddp-after-cancel").train(DdpProbe, steps=1)
    again.wait(120)  # the workers' process groups were ended: a new one starts
    assert again.get_info().status is JobStatus.COMPLETED, again.get_info().errors


def test_a_rank_worker_killed_while_its_peer_waits_in_a_collective(tmp_path):
    cluster = ProcessCluster(tmp_path)
    try:
        for name in "abc":
            cluster.add_worker(name, resources="GPU=1")
        future = trainer(cluster.address, "ddp-killed").train(
            DdpProbe, steps=3, hold_rank=1, hold_seconds=600
        )
        poll(
            lambda: any("all_reduce gave" in line for line in future.logs()),
            120,
            what="the process group to be up",
        )
        victim = future.training.workers[1]
        cluster.kill_worker(cluster.worker_name_at(victim))
        future.wait(60)
        info = future.get_info()
        assert info.status is JobStatus.ERRORED
        error = info.errors[0]
        assert isinstance(error, RankFailed) and error.rank == 1 and error.worker == victim
        assert "died" in str(error)
        poll(lambda: ranks_running(cluster.client, future.id) == 0, 10, what="rank 0 to stop")
    finally:
        DaskConnection.close_all()
        cluster.close()
