"""Room from an adaptive cluster: a model that fits nowhere gets a new worker, the
cluster keeps the workers its models fill, and a load fails only at the maximum.

Each worker offers one ``MODEL`` and each model takes one, so every model needs a
worker of its own: the models, not tasks, decide how many workers there are.
"""

from __future__ import annotations

import itertools
import threading
import time

import dask.config
import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll, unpickled_without_caikit_dask, worker_env
from dask_testlib import save_fault_model
from distributed import Client, LocalCluster

from caikit_dask import DaskModelInitializer, cluster_state
from caikit_dask.connection import DaskConnection
from caikit_dask.errors import DaskBackendError

pytestmark = pytest.mark.slow

CLUSTER_KWARGS = {
    "n_workers": 1,
    "threads_per_worker": 2,
    "processes": True,
    "resources": {"MODEL": 1},
    "host": "127.0.0.1",
    "dashboard_address": "127.0.0.1:0",
}
ADAPT = {"minimum": 1, "maximum": 2, "interval": "100ms", "wait_count": 2}
_names = itertools.count()


@pytest.fixture
def model_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    return save_fault_model(str(tmp_path / "model"))


@pytest.fixture
def adaptive_cluster(model_path):
    cluster = LocalCluster(**CLUSTER_KWARGS)
    cluster.adapt(**ADAPT)
    yield cluster
    DaskConnection.close_all()
    cluster.close()


def _load(connection, model_path, **settings):
    initializer = DaskModelInitializer(
        {
            "connection": connection,
            "resources": {"MODEL": 1},
            "call_timeout": "30s",
            "health_check_period": "0.5s",
            **settings,
        },
        f"scale-up-{next(_names)}",
    )
    return initializer.init(ModuleConfig.load(model_path))


def _workers(client: Client) -> list[str]:
    return list(cluster_state.workers(client))


def _adaptive_target(client: Client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.adaptive_target())


def test_a_model_that_fits_nowhere_gets_a_worker_from_the_adaptive_cluster(
    adaptive_cluster, model_path
):
    connection = {"address": adaptive_cluster.scheduler_address}
    first = _load(connection, model_path)
    started = time.monotonic()
    second = _load(connection, model_path)
    grew_in = time.monotonic() - started
    [first_worker] = [r["worker"] for r in first.replicas]
    [second_worker] = [r["worker"] for r in second.replicas]
    assert second_worker != first_worker
    assert second.run("hi").label and first.run("hi").label
    with Client(adaptive_cluster.scheduler_address, set_as_default=False) as admin:
        assert sorted(_workers(admin)) == sorted([first_worker, second_worker])
        # Two models fill two workers: adaptive scaling keeps both, though no task runs.
        assert _adaptive_target(admin) == 2
        with (
            dask.config.set({"caikit_dask.scale-up-timeout": "2s"}),
            pytest.raises(DaskBackendError, match="none with room joined within 2"),
        ):
            _load(connection, model_path)  # the cluster stays at its maximum of 2
        second.close()
        poll(lambda: len(_workers(admin)) == 1, 30, what="the scale-down to one worker")
    assert first.run("hi").label  # moved first if its worker was the one retired
    print(f"a new worker had room after {grew_in:.2f}s")
    first.close()


def test_an_own_adaptive_cluster_grows_and_refuses_at_its_maximum_at_once(model_path):
    connection = {
        "cluster": {
            "class": "distributed.LocalCluster",
            "kwargs": CLUSTER_KWARGS,
            "adapt": ADAPT,
        }
    }
    try:
        first = _load(connection, model_path)
        second = _load(connection, model_path)
        assert {r["worker"] for r in first.replicas}.isdisjoint(
            {r["worker"] for r in second.replicas}
        )
        started = time.monotonic()
        with pytest.raises(DaskBackendError, match="at its adaptive maximum of 2"):
            _load(connection, model_path)
        assert time.monotonic() - started < 5
        assert second.run("hi").label and first.run("hi").label
    finally:
        DaskConnection.close_all()


def test_autoscaled_replicas_grow_onto_new_workers_and_the_cluster_shrinks_after(
    adaptive_cluster, model_path
):
    model = _load(
        {"address": adaptive_cluster.scheduler_address},
        model_path,
        autoscaling={
            "min_replicas": 1,
            "max_replicas": 2,
            "target_ongoing_requests": 1,
            "upscale_delay": "0.3s",
            "downscale_delay": "1s",
        },
    )
    calls, failures, stop = [0], [], threading.Event()

    def call_until_stopped():
        while not stop.is_set():
            try:
                model.run("sleep:0.05")
                calls[0] += 1
            except Exception as err:  # noqa: BLE001 - asserted below
                failures.append(err)

    callers = [threading.Thread(target=call_until_stopped, daemon=True) for _ in range(6)]
    for thread in callers:
        thread.start()
    try:
        poll(lambda: len({r["worker"] for r in model.replicas}) == 2, 60, what="two replicas")
    finally:
        stop.set()
        for thread in callers:
            thread.join(30)
    assert not failures and calls[0] > 0
    with Client(adaptive_cluster.scheduler_address, set_as_default=False) as admin:
        assert len(_workers(admin)) == 2
        poll(lambda: len(model.replicas) == 1, 30, what="the shrink to one replica")
        poll(lambda: len(_workers(admin)) == 1, 30, what="the cluster back to one worker")
    assert model.run("hi").label
    model.close()


def test_the_scheduler_plugin_needs_no_caikit_dask():
    from caikit_dask.loading.scheduler.adaptive_target import CountModelsInAdaptiveTarget

    shown = unpickled_without_caikit_dask(CountModelsInAdaptiveTarget(), "obj.name")
    assert shown == "caikit-dask-adaptive-target"
