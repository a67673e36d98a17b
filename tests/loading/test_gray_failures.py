"""Gray failures: a worker that stops answering (SIGSTOP) while the scheduler still lists it.

Real ``dask scheduler`` and nanny-managed ``dask worker`` processes; the frozen worker
is the worker process itself (its nanny keeps running, as a hung driver would leave it).
"""

import threading
import time

import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import actor_keys_on_workers, booked_keys, frozen, poll
from dask_testlib import save_fault_model

from caikit_dask import DaskModelInitializer

pytestmark = pytest.mark.slow

HEALTH_CHECK_TIMEOUT = 2.0
CALL_TIMEOUT = 30.0


def _initializer(cluster, replicas, name):
    return DaskModelInitializer(
        {
            "connection": {"address": cluster.address},
            "replicas": replicas,
            "call_timeout": f"{CALL_TIMEOUT}s",
            "health_check_period": "0.5s",
            "health_check_timeout": f"{HEALTH_CHECK_TIMEOUT}s",
        },
        name,
    )


def _workers(cluster, count=3):
    for name in "abc"[:count]:
        cluster.add_worker(name, nanny=True)


def _alive(model):
    return {r["worker"] for r in model.replicas if r["alive"]}


def _released_on_wake(cluster, worker, keys):
    """After SIGCONT: the frozen worker dropped its old actors, and no book holds them."""
    poll(
        lambda: not (keys & actor_keys_on_workers(cluster.client)),
        30,
        what="the woken worker to drop its old actor",
    )
    assert not (keys & booked_keys(cluster.client).get(worker, set()))
    booked = [key for keys_ in booked_keys(cluster.client).values() for key in keys_]
    assert len(booked) == len(set(booked)), "an actor is booked on two workers"


def test_frozen_worker_two_replicas_no_call_fails(process_cluster, tmp_path):
    _workers(process_cluster)
    path = save_fault_model(str(tmp_path / "model"))
    model = _initializer(process_cluster, 2, "gray-2").init(ModuleConfig.load(path))
    replicas = {r["worker"]: r["key"] for r in model.replicas}
    assert len(replicas) == 2
    stop, failures, latencies = threading.Event(), [], []

    def traffic():
        while not stop.is_set():
            started = time.monotonic()
            try:
                model.run("hello")
            except Exception as err:  # noqa: BLE001 - every failure is a test failure
                failures.append(err)
            latencies.append(time.monotonic() - started)

    threads = [threading.Thread(target=traffic) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        poll(lambda: len(latencies) > 100, 30, what="traffic")
        victim = sorted(replicas)[0]
        name = process_cluster.worker_name_at(victim)
        with frozen(process_cluster.worker_pid(name)):
            froze_at = time.monotonic()
            poll(
                lambda: len(_alive(model)) == 2 and victim not in _alive(model),
                CALL_TIMEOUT,
                what="a replacement for the frozen replica",
            )
            replaced_in = time.monotonic() - froze_at
            print(f"\nfreeze -> replacement loaded: {replaced_in:.2f}s")  # for the report
            during = len(latencies)
            poll(lambda: len(latencies) > during + 100, 30, what="traffic while frozen")
        poll(lambda: len(latencies) > during + 200, 30, what="traffic after the wake-up")
    finally:
        stop.set()
        for thread in threads:
            thread.join(CALL_TIMEOUT)
    assert failures == []
    # No call waits much past the detection (timeout + a check period) plus a retry.
    assert max(latencies) < HEALTH_CHECK_TIMEOUT + 8, max(latencies)
    assert replaced_in < HEALTH_CHECK_TIMEOUT + 15
    _released_on_wake(process_cluster, victim, {replicas[victim]})
    model.close()


def test_frozen_single_replica_fails_over(process_cluster, tmp_path):
    _workers(process_cluster, 2)
    path = save_fault_model(str(tmp_path / "model"))
    model = _initializer(process_cluster, 1, "gray-1").init(ModuleConfig.load(path))
    [(victim, key)] = [(r["worker"], r["key"]) for r in model.replicas]
    name = process_cluster.worker_name_at(victim)
    with frozen(process_cluster.worker_pid(name)):
        started = time.monotonic()
        label = model.run("hello").label  # waits for the replacement, within call_timeout
        took = time.monotonic() - started
        [replacement] = _alive(model)
        assert replacement != victim
        assert label == str(process_cluster.worker_pid(process_cluster.worker_name_at(replacement)))
    print(f"\nfrozen single replica: call answered by the replacement after {took:.2f}s")
    assert took < CALL_TIMEOUT
    _released_on_wake(process_cluster, victim, {key})
    model.close()


def test_freeze_during_a_load_loads_elsewhere(process_cluster, tmp_path):
    _workers(process_cluster, 2)
    path = save_fault_model(str(tmp_path / "slow"), load_seconds=4)
    result = {}

    def load():
        try:
            result["model"] = _initializer(process_cluster, 1, "gray-load").init(
                ModuleConfig.load(path)
            )
        except Exception as err:  # noqa: BLE001 - asserted below
            result["error"] = err

    loader = threading.Thread(target=load)
    loader.start()
    processing = poll(
        lambda: {w: keys for w, keys in process_cluster.client.processing().items() if keys},
        30,
        what="the load to start on a worker",
    )
    [(victim, keys)] = processing.items()
    name = process_cluster.worker_name_at(victim)
    with frozen(process_cluster.worker_pid(name)):
        started = time.monotonic()
        loader.join(CALL_TIMEOUT + 10)
        took = time.monotonic() - started
        assert "error" not in result, result.get("error")
        model = result["model"]
        [replica] = model.replicas
        assert replica["worker"] != victim
        assert model.run("hello").label
    print(f"\nfreeze during a load -> loaded elsewhere after {took:.2f}s")
    _released_on_wake(process_cluster, victim, set(map(str, keys)))
    model.close()
