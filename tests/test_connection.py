"""The connection: embedded LocalCluster by default, the current client, sharing, closing."""

import socket
import time

import dask
import pytest
from caikit.core.modules import ModuleConfig
from distributed import Client, LocalCluster

from caikit_dask import DaskBackend, DaskModelInitializer, DaskModelTrainer
from caikit_dask.config import ConnectionConfig
from caikit_dask.connection import DaskConnection
from caikit_dask.errors import DaskBackendError, DaskConfigError
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
        assert backend.client.submit(sum, [1, 2]).result(timeout=20) == 3
        assert backend.train(TextClassifier, epochs=2).run("nice").label in {"positive", "negative"}
        assert backend.connection._cluster._adaptive is not None
    finally:
        backend.stop()


def test_unimportable_cluster_class_names_the_key():
    backend = DaskBackend({"connection": {"cluster": {"class": "no_such_pkg.Cluster"}}})
    with pytest.raises(DaskConfigError, match="connection.cluster.class"):
        backend.start()


def test_in_process_local_cluster_serves(trained_model_dir):
    """``local: {processes: false}``: scheduler and workers in this process (inproc://)."""
    config = {"local": {"processes": False, "n_workers": 1}, "use_current_client": False}
    backend = DaskBackend({"connection": config})
    backend.start()
    try:
        assert backend.connection._cluster.scheduler_address.startswith("inproc://")
        assert backend.client.submit(sum, [1, 2]).result(timeout=20) == 3
        proxy = backend.load(ModuleConfig.load(trained_model_dir))
        assert proxy.run("nice").label == TextClassifier.load(trained_model_dir).run("nice").label
        proxy.close()
    finally:
        backend.stop()


def test_timeout_defaults_to_dask_connect_timeout(local_cluster):
    """Without connection.timeout the client uses distributed.comm.timeouts.connect, read
    when it connects; an explicit connection.timeout still wins."""
    address = local_cluster.scheduler_address
    # an earlier test (a docs example) may have opened the shared client for this mapping
    DaskConnection.from_config({"address": address}).close()
    with dask.config.set({"distributed.comm.timeouts.connect": "7s"}):
        from_dask = DaskBackend({"connection": {"address": address}})
        given = DaskBackend({"connection": {"address": address, "timeout": "12s"}})
        try:
            assert from_dask.client._timeout == 7
            assert given.client._timeout == 12
        finally:
            from_dask.connection.close()
            given.connection.close()


def test_unreachable_scheduler_fails_within_dask_connect_timeout():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{unused.getsockname()[1]}"
    backend = DaskBackend({"connection": {"address": address}})
    started = time.monotonic()
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(DaskBackendError, match=f"at {address} within 1s"),
    ):
        backend.start()
    assert time.monotonic() - started < 15


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
