"""Dropping a published dataset on the scheduler: by value, and nothing left behind."""

from __future__ import annotations

from cluster_support import unpickled_without_caikit_dask
from distributed import Client, LocalCluster

from caikit_dask.dask_internals import drop_published


def test_a_dataset_and_its_client_entry_go_only_while_it_holds_the_key():
    with (
        LocalCluster(n_workers=1, host="127.0.0.1", dashboard_address=":0") as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        future = client.submit(sum, [1, 2])
        client.publish_dataset(future, name="run")
        key = future.key

        def left(dask_scheduler):
            publish = dask_scheduler.extensions["publish"]
            return "run" in publish.datasets, "published-run" in dask_scheduler.clients

        assert client.run_on_scheduler(left) == (True, True)
        client.run_on_scheduler(drop_published, "run", "another run's key")
        assert client.run_on_scheduler(left) == (True, True)  # a newer run keeps its dataset
        client.run_on_scheduler(drop_published, "run", key)
        assert client.run_on_scheduler(left) == (False, False)


def test_the_step_reaches_the_scheduler_without_caikit_dask():
    assert unpickled_without_caikit_dask(drop_published, "obj.__name__") == "drop_published"
