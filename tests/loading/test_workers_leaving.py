"""Workers that leave: retiring a worker moves its models first, and no call fails."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import (
    calls_until,
    poll,
    run_in_threads,
    unpickled_without_caikit_dask,
    worker_env,
)
from distributed import Client, LocalCluster

from caikit_dask import DaskModelInitializer
from caikit_dask.connection import DaskConnection

pytestmark = pytest.mark.slow

TEXT = "What a wonderful day"


@pytest.fixture
def cluster(request, monkeypatch):
    """Two worker processes of our own (or ``n_workers`` by indirect parametrization)."""
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    cluster = LocalCluster(
        n_workers=getattr(request, "param", 2),
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    yield cluster
    DaskConnection.close_all()
    cluster.close()


def _load(cluster, name, replicas, trained_model_dir):
    initializer = DaskModelInitializer(
        {
            "connection": {"address": cluster.scheduler_address},
            "replicas": replicas,
            "call_timeout": "30s",
            "health_check_period": "0.5s",
        },
        name,
    )
    return initializer.init(ModuleConfig.load(trained_model_dir))


def _traffic_until(model, stop: threading.Event, calls: list):
    return calls_until(model, stop, calls, TEXT)


def run_in_background(target, count):
    """``run_in_threads`` in the background; call the result to join it."""
    outcomes: list = []
    thread = threading.Thread(target=lambda: outcomes.extend(run_in_threads(target, count)))
    thread.start()

    def join():
        thread.join(90)
        return outcomes

    return join


def test_retire_a_worker_holding_a_replica_during_traffic(cluster, trained_model_dir):
    model = _load(cluster, "retire-under-traffic", 1, trained_model_dir)
    expected = model.run(TEXT).label
    [leaving] = [r["worker"] for r in model.replicas]
    stop, calls, moved = threading.Event(), [], {}

    def retire_then_stop():
        try:
            poll(lambda: len(calls) > 100, 30, what="traffic before the retirement")
            with Client(cluster.scheduler_address, set_as_default=False) as admin:
                before = len(calls)
                started = time.monotonic()
                moved["retired"] = admin.retire_workers([leaving], close_workers=True)
                moved["seconds"] = time.monotonic() - started
                moved["calls during"] = len(calls) - before
            after = len(calls)
            poll(lambda: len(calls) > after + 100, 30, what="traffic after the retirement")
        finally:
            stop.set()

    retiring = threading.Thread(target=retire_then_stop)
    retiring.start()
    outcomes = run_in_threads(_traffic_until(model, stop, calls), 16, join_timeout=120)
    retiring.join(60)

    assert None not in outcomes, "a caller hung"
    assert [err for failures, _ in outcomes for err in failures] == []
    assert set(calls) == {expected}
    assert leaving in moved["retired"], moved
    assert moved["calls during"] > 0
    with Client(cluster.scheduler_address, set_as_default=False) as admin:
        assert leaving not in admin.scheduler_info()["workers"]
    assert [r["worker"] for r in model.replicas] != [leaving]
    assert all(r["alive"] for r in model.replicas) and len(model.replicas) == 1
    assert model.run(TEXT).label == expected
    print(f"moved in {moved['seconds']:.2f}s, {moved['calls during']} calls during the move")
    model.close()


def test_adaptive_cluster_serving_a_model_scales_down(cluster, trained_model_dir):
    model = _load(cluster, "adaptive-scale-down", 2, trained_model_dir)
    expected = model.run(TEXT).label
    assert len({r["worker"] for r in model.replicas}) == 2
    load_stop, calls = threading.Event(), []
    load = run_in_background(_traffic_until(model, load_stop, calls), 4)
    poll(lambda: len(calls) > 50, 30, what="the load")
    load_stop.set()  # the load stops; one caller goes on through the scale-down
    trickle_stop = threading.Event()
    trickle = run_in_background(_traffic_until(model, trickle_stop, calls), 1)
    started = time.monotonic()
    cluster.adapt(minimum=1, maximum=2, interval="100ms", wait_count=2)
    with Client(cluster.scheduler_address, set_as_default=False) as admin:
        poll(lambda: len(admin.scheduler_info()["workers"]) == 1, 60, what="scale-down")
        print(f"scaled down in {time.monotonic() - started:.2f}s, {len(calls)} calls in all")
        [remaining] = admin.scheduler_info()["workers"]
    after = len(calls)
    poll(lambda: len(calls) > after + 20, 30, what="calls after the scale-down")
    trickle_stop.set()
    outcomes = load() + trickle()
    assert None not in outcomes, "a caller hung"
    assert [err for failures, _ in outcomes for err in failures] == []
    assert set(calls) == {expected}
    assert {r["worker"] for r in model.replicas} == {remaining}
    assert len(model.replicas) == 2
    assert model.run(TEXT).label == expected
    model.close()


@pytest.mark.parametrize("cluster", [1], indirect=True)
def test_the_only_worker_is_not_retired_and_keeps_serving(cluster, trained_model_dir):
    model = _load(cluster, "retire-the-only-worker", 1, trained_model_dir)
    expected = model.run(TEXT).label
    [worker] = [r["worker"] for r in model.replicas]
    with Client(cluster.scheduler_address, set_as_default=False) as admin:
        started = time.monotonic()
        assert admin.retire_workers([worker], close_workers=True) == {}
        assert time.monotonic() - started < 10  # told at once that the model cannot move
        assert list(admin.scheduler_info()["workers"]) == [worker]
    assert model.run(TEXT).label == expected
    assert [r["worker"] for r in model.replicas] == [worker]
    model.close()


def test_a_worker_closing_gracefully_moves_its_model_first(cluster, trained_model_dir, caplog):
    caplog.set_level(logging.INFO)
    model = _load(cluster, "close-gracefully", 1, trained_model_dir)
    expected = model.run(TEXT).label
    [leaving] = [r["worker"] for r in model.replicas]
    stop, calls = threading.Event(), []
    traffic = run_in_background(_traffic_until(model, stop, calls), 4)
    poll(lambda: len(calls) > 50, 30, what="traffic")
    with Client(cluster.scheduler_address, set_as_default=False) as admin:
        admin.run(
            lambda dask_worker: dask_worker.loop.add_callback(dask_worker.close_gracefully),
            workers=[leaving],
        )
        poll(lambda: leaving not in admin.scheduler_info()["workers"], 60, what="the worker gone")
    after = len(calls)
    poll(lambda: len(calls) > after + 50, 30, what="traffic after the worker left")
    stop.set()
    outcomes = traffic()
    assert None not in outcomes, "a caller hung"
    assert [err for failures, _ in outcomes for err in failures] == []
    assert set(calls) == {expected}
    [replica] = model.replicas
    assert replica["worker"] != leaving and replica["alive"]
    moves = [r.getMessage() for r in caplog.records if "off the retiring worker" in r.getMessage()]
    assert len(moves) == 1 and leaving in moves[0]  # moved first, not recovered after
    model.close()


def test_a_published_model_keeps_its_worker(cluster, trained_model_dir):
    model = _load(cluster, "retire-published", 1, trained_model_dir)
    expected = model.run(TEXT).label
    model.publish("retire-published")
    [worker] = [r["worker"] for r in model.replicas]
    with Client(cluster.scheduler_address, set_as_default=False) as admin:
        started = time.monotonic()
        assert admin.retire_workers([worker]) == {}
        assert time.monotonic() - started < 10  # refused at once, not after a wait
        assert worker in admin.scheduler_info()["workers"]
    assert model.run(TEXT).label == expected
    assert [r["worker"] for r in model.replicas] == [worker]
    model.close()


def test_the_scheduler_plugin_needs_no_caikit_dask():
    from caikit_dask.loading.scheduler.retiring import MoveModelsBeforeRetiring
    from caikit_dask.loading.upkeep.leaving import MOVE_TIMEOUT

    shown = unpickled_without_caikit_dask(
        MoveModelsBeforeRetiring(MOVE_TIMEOUT), "obj.name, obj.timeout"
    )
    assert shown.split() == ["caikit-dask-retiring", str(MOVE_TIMEOUT)]
