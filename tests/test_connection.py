"""The connection: embedded LocalCluster by default, the current client, sharing, closing."""

import pytest
from distributed import Client, LocalCluster

from caikit_dask import DaskBackend, DaskModelInitializer, DaskModelTrainer
from caikit_dask.config import ConnectionConfig
from caikit_dask.connection import DaskConnection
from caikit_dask.errors import DaskConfigError
from caikit_dask.example import TextClassifier


def test_default_is_an_embedded_local_cluster_closed_with_the_last_user():
    connection = DaskConnection.from_config(
        {"local": {"n_workers": 1}, "use_current_client": False}
    )
    trainer_backend = DaskBackend(
        {"connection": {"local": {"n_workers": 1}, "use_current_client": False}}
    )
    assert trainer_backend.connection is connection
    trainer_backend.start()
    cluster = connection._cluster
    assert isinstance(cluster, LocalCluster)
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert cluster.processes
    other = DaskBackend({"connection": {"use_current_client": False, "local": {"n_workers": 1}}})
    other.start()
    assert other.client is trainer_backend.client
    trainer_backend.stop()
    assert connection.is_open
    other.stop()
    assert not connection.is_open
    assert cluster.status.name == "closed"


def test_trainer_and_initializer_with_one_mapping_share_one_client(connection):
    trainer = DaskModelTrainer({"connection": connection}, "shared")
    initializer = DaskModelInitializer({"connection": connection}, "shared")
    assert trainer.backend.connection is initializer.backend.connection
    assert trainer.backend.client is initializer.backend.client


def test_current_client_is_used_and_not_closed(local_cluster):
    with Client(local_cluster.scheduler_address) as current:
        backend = DaskBackend({"connection": {}})
        backend.start()
        assert backend.client is current
        backend.stop()
        assert current.status == "running"


def test_cluster_class_from_an_import_path_with_adapt():
    backend = DaskBackend(
        {
            "connection": {
                "cluster": {
                    "class": "distributed.LocalCluster",
                    "kwargs": {
                        "n_workers": 0,
                        "processes": True,
                        "host": "127.0.0.1",
                        "dashboard_address": "127.0.0.1:0",
                    },
                    "adapt": {"minimum": 1, "maximum": 1},
                }
            }
        }
    )
    backend.start()
    try:
        assert backend.train(TextClassifier, epochs=2).run("nice").label
        assert backend.connection._cluster._adaptive is not None
    finally:
        backend.stop()


def test_unimportable_cluster_class_names_the_key():
    backend = DaskBackend({"connection": {"cluster": {"class": "no_such_pkg.Cluster"}}})
    with pytest.raises(DaskConfigError, match="connection.cluster.class"):
        backend.start()


@pytest.mark.parametrize("embedded", [False, True])
def test_close_callbacks_run_once_before_the_client_they_belong_to_closes(local_cluster, embedded):
    mapping = (
        {"local": {"n_workers": 0}, "use_current_client": False}
        if embedded
        else {"address": local_cluster.scheduler_address}
    )
    connection = DaskConnection(ConnectionConfig.from_mapping(mapping))
    client = connection.acquire()
    seen = []

    def record(cluster_closes):
        seen.append((client.status, cluster_closes))

    DaskConnection.on_close(client, record)
    connection.release()
    assert seen == [("running", embedded)]
    assert client.status == "closed"
    connection.close()
    assert len(seen) == 1


def test_close_callbacks_of_a_borrowed_client_never_run(local_cluster):
    with Client(local_cluster.scheduler_address) as current:
        backend = DaskBackend({"connection": {}})
        backend.start()
        seen = []
        DaskConnection.on_close(current, seen.append)
        backend.stop()
        assert current.status == "running"
        assert seen == []
