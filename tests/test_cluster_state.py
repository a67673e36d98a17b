"""Shared readers of client state: every worker the scheduler knows, one value per client."""

import gc

from distributed import Client, LocalCluster

from caikit_dask.cluster_state import worker_resources, workers
from caikit_dask.per_client import PerClient


def test_workers_lists_every_worker_with_its_resources():
    with (
        LocalCluster(
            n_workers=7,
            threads_per_worker=1,
            processes=False,
            dashboard_address="127.0.0.1:0",
            resources={"GPU": 1},
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        assert len(workers(client)) == 7  # older distributed listed five unless asked
        assert list(worker_resources(client).values()) == [{"GPU": 1}] * 7


def test_one_value_per_client_dropped_with_the_client(local_cluster):
    made = []
    registry = PerClient(lambda client: made.append(client) or object())
    first = Client(local_cluster.scheduler_address, set_as_default=False)
    second = Client(local_cluster.scheduler_address, set_as_default=False)
    try:
        assert registry.get(first) is registry.get(first)
        assert registry.get(second) is not registry.get(first)
        assert registry.peek(second) is registry.get(second)
        assert len(made) == 2
    finally:
        first.close()
        second.close()
    del first, second, made[:]
    gc.collect()
    assert len(registry) == 0
