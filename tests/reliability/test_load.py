"""Load: many calls from many threads, many load/unload cycles, many trainings.

Nothing may fail, and nothing may accumulate: not memory in the caller or on the
workers, not actors, futures, scheduler tasks, published datasets or scheduler metadata.
Run with ``pytest -s`` to see the measured numbers.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import Counter

import psutil
import pytest
from caikit.core.data_model import JobStatus
from caikit.core.modules import ModuleConfig
from cluster_support import ProcessCluster, poll
from dask_testlib import FaultModule, save_fault_model
from reliability_support import call_within

from caikit_dask import DaskModelInitializer, DaskModelTrainer
from caikit_dask.connection import DaskConnection
from caikit_dask.example import TextClassifier
from caikit_dask.loading.replicas.replica_set import ReplicaSet
from caikit_dask.loading.scheduler.books import PLACEMENTS
from caikit_dask.training.events import DATASET_PREFIX, FINISHED_METADATA

pytestmark = pytest.mark.slow

MB = 2**20


@pytest.fixture(scope="module")
def load_cluster(tmp_path_factory):
    """Our own scheduler and two workers, each a process: memory numbers are per process."""
    cluster = ProcessCluster(tmp_path_factory.mktemp("load-cluster"))
    try:
        cluster.add_worker("load-a")
        cluster.add_worker("load-b")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def load_connection(load_cluster):
    mapping = {"address": load_cluster.address, "timeout": "20s"}
    yield mapping
    DaskConnection.from_config(mapping).close()


@pytest.fixture(scope="module")
def fault_model(tmp_path_factory):
    return save_fault_model(str(tmp_path_factory.mktemp("load") / "fault"))


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """A TextClassifier with 2**20 features: megabytes of weights, so a leaked copy shows."""
    path = tmp_path_factory.mktemp("load") / "big-classifier"
    TextClassifier.train(epochs=2, n_features=2**20).save(str(path))
    return str(path)


# -- what the cluster holds ------------------------------------------------------------------


def cluster_state(client) -> dict:
    """Counts and memory of the scheduler and workers (functions nested: sent by value)."""

    def worker_state(dask_worker) -> dict:
        return {
            "rss": psutil.Process().memory_info().rss,
            "actors": len(dask_worker.state.actors),
            "data": len(dask_worker.data),
        }

    def scheduler_state(dask_scheduler) -> dict:
        metadata = dask_scheduler.task_metadata
        placements = metadata.get(PLACEMENTS) or {}
        return {
            "scheduler_rss": psutil.Process().memory_info().rss,
            "clients": len(dask_scheduler.clients),
            "tasks": len(dask_scheduler.tasks),
            "datasets": len(dask_scheduler.extensions["publish"].datasets),
            "finished_entries": len(metadata.get(FINISHED_METADATA) or {}),
            "placements": sum(len(actors or {}) for actors in placements.values()),
        }

    workers = client.run(worker_state)
    return {
        "workers": workers,
        "actors": sum(w["actors"] for w in workers.values()),
        "worker_data": sum(w["data"] for w in workers.values()),
        "client_futures": len(client.futures),
        "who_has": len(client.who_has()),
        "our_datasets": len([n for n in client.list_datasets() if str(n).startswith("caikit")]),
        **client.run_on_scheduler(scheduler_state),
    }


def client_rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def live_replica_sets() -> int:
    gc.collect()
    return sum(isinstance(obj, ReplicaSet) and not obj.closed for obj in gc.get_objects())


# -- 10,000 calls ----------------------------------------------------------------------------

CALLS, THREADS = 10_000, 32


def test_10000_calls_from_32_threads_over_2_replicas(load_connection, fault_model):
    initializer = DaskModelInitializer(
        {"connection": load_connection, "replicas": 2, "call_timeout": "30s"}, "load-calls"
    )
    proxy = initializer.init(ModuleConfig.load(fault_model))
    assert len({r["worker"] for r in proxy.replicas}) == 2
    shares = [CALLS // THREADS + (index < CALLS % THREADS) for index in range(THREADS)]
    errors: list[BaseException] = []
    answered_by: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(THREADS + 1)

    def caller(count: int) -> None:
        start.wait()
        local: Counter[str] = Counter()
        try:
            for _ in range(count):
                local[proxy.run("Great value").label] += 1
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)
        with lock:
            answered_by.update(local)

    threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in shares]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    deadline = began + 120
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    elapsed = time.monotonic() - began
    hung = sum(thread.is_alive() for thread in threads)
    proxy.close()

    print(
        f"\n[load] {CALLS} calls from {THREADS} threads over 2 replicas: {elapsed:.1f}s, "
        f"{CALLS / elapsed:.0f} calls/s; per replica {dict(answered_by)}"
    )
    assert hung == 0, f"{hung} caller threads still running after 120s"
    assert errors == [], f"{len(errors)} calls failed, e.g. {errors[0]!r}"
    assert sum(answered_by.values()) == CALLS
    assert len(answered_by) == 2, "one replica answered everything"
    assert min(answered_by.values()) > CALLS / 10, f"calls were not spread: {answered_by}"


# -- load / unload cycles --------------------------------------------------------------------


def test_close_releases_the_actors_at_once_also_after_calls(load_connection, fault_model):
    """close() must not leave the actors to the garbage collector.

    Every call through a distributed Actor handle leaves a reference cycle holding the
    handle (Actor.__getattr__'s ``run_actor_function_on_worker`` closure refers to itself),
    and the handle holds its own Future on the actor's key: unless that Future is released
    too, the actor stays on its worker until the cyclic GC happens to run.
    """
    initializer = DaskModelInitializer(
        {"connection": load_connection, "replicas": 2}, "load-release"
    )
    client = initializer.backend.client
    proxy = initializer.init(ModuleConfig.load(fault_model))
    keys = {r["key"] for r in proxy.replicas}
    assert proxy.run("x").label
    gc.disable()  # what close() does must suffice, whenever the collector runs
    try:
        proxy.close()
        poll(
            lambda: not keys & set(client.futures) and not keys & actor_keys(client),
            10,
            what="close() to release the actors (without a garbage collection)",
        )
    finally:
        gc.enable()


def actor_keys(client) -> set[str]:
    keys = client.run(lambda dask_worker: [str(key) for key in dask_worker.state.actors])
    return {key for worker_keys in keys.values() for key in worker_keys}


CYCLES = 50


def test_load_unload_cycles_leak_nothing(load_connection, big_model):
    initializer = DaskModelInitializer(
        {"connection": load_connection, "replicas": 2, "call_timeout": "30s"}, "load-cycles"
    )
    client = initializer.backend.client

    def cycle() -> None:
        proxy = initializer.init(ModuleConfig.load(big_model))
        for text in ("Lovely", "Awful", "Fine"):
            assert proxy.run(text).label in ("positive", "negative")
        assert len(list(proxy.run_stream("Great. Awful."))) == 2
        proxy.close()

    for _ in range(3):  # warm up: imports, connection pools, first-use caches
        call_within(60, cycle)
    poll(lambda: cluster_state(client)["actors"] == 0, 20, what="warm-up actors released")
    before, rss_before = cluster_state(client), client_rss()
    started = time.monotonic()
    for _ in range(CYCLES):
        call_within(60, cycle)
    elapsed = time.monotonic() - started
    after = poll(
        lambda: (state := cluster_state(client))["actors"] == 0 and state,
        20,
        what="every actor to be released",
    )
    rss_after = client_rss()

    model_mb = sum(os.path.getsize(os.path.join(big_model, f)) for f in os.listdir(big_model)) / MB
    print(
        f"\n[load] {CYCLES} cycles of init (2 replicas) + 4 calls + close, {model_mb:.1f} MB "
        f"model: {elapsed:.1f}s ({elapsed / CYCLES * 1000:.0f} ms/cycle); "
        f"{memory_report(rss_before, rss_after, before, after)}"
    )
    assert after["actors"] == 0
    assert after["placements"] == before["placements"] == 0
    assert live_replica_sets() == 0, "closed proxies' ReplicaSets are still alive"
    assert not leaks(before, after, allowance=0), leaks(before, after, allowance=0)
    # A model copy leaked per cycle would be CYCLES x model_mb on each worker.
    assert max(worker_growth(before, after).values()) < min(64, CYCLES * model_mb / 4)
    assert (after["scheduler_rss"] - before["scheduler_rss"]) / MB < 30
    assert (rss_after - rss_before) / MB < 30


COUNTED = ("client_futures", "who_has", "tasks", "worker_data", "datasets", "our_datasets")


def leaks(before: dict, after: dict, allowance: int) -> list[str]:
    """What the cluster holds more of than before (beyond ``allowance``)."""
    return [
        f"{key}: {before[key]} -> {after[key]}"
        for key in (*COUNTED, "clients", "finished_entries")
        if after[key] > before[key] + allowance
    ]


def worker_growth(before: dict, after: dict) -> dict[str, float]:
    return {
        address: (after["workers"][address]["rss"] - state["rss"]) / MB
        for address, state in before["workers"].items()
        if address in after["workers"]
    }


def memory_report(rss_before: int, rss_after: int, before: dict, after: dict) -> str:
    workers = ", ".join(f"{growth:+.1f}" for growth in worker_growth(before, after).values())
    counts = {key: f"{before[key]}->{after[key]}" for key in (*COUNTED, "clients")}
    return (
        f"client RSS {rss_before / MB:.0f} -> {rss_after / MB:.0f} MB; scheduler RSS "
        f"{before['scheduler_rss'] / MB:.0f} -> {after['scheduler_rss'] / MB:.0f} MB; "
        f"worker RSS growth [{workers}] MB; counts {counts}"
    )


# -- 500 trainings ---------------------------------------------------------------------------

TRAININGS, BATCH = 500, 50


def test_500_released_trainings_leave_nothing_behind(load_connection):
    trainer = DaskModelTrainer(
        {"connection": load_connection, "retention_duration": "0s"}, "load-trainings"
    )
    client = trainer.backend.client
    warm = trainer.train(FaultModule)
    call_within(30, warm.wait, 25)
    del warm
    before, rss_before = cluster_state(client), client_rss()
    started = time.monotonic()
    statuses: Counter[str] = Counter()
    peak = {key: 0 for key in COUNTED}
    for _ in range(TRAININGS // BATCH):
        # Each train() forgets the trainings finished before it (retention_duration 0s).
        futures = [call_within(30, trainer.train, FaultModule) for _ in range(BATCH)]
        for future in futures:
            call_within(30, future.wait, 25)
            statuses[future.get_info().status.name] += 1
        del futures
        state = cluster_state(client)
        peak = {key: max(peak[key], state[key]) for key in COUNTED}
    elapsed = time.monotonic() - started
    last = trainer.train(FaultModule)  # forgets all 500
    call_within(30, last.wait, 25)
    after = poll(
        lambda: (state := cluster_state(client))["tasks"] <= before["tasks"] + 1 and state,
        20,
        what="the scheduler to forget the released trainings",
    )
    rss_after = client_rss()
    print(
        f"\n[load] {TRAININGS} trainings (batches of {BATCH}) in {elapsed:.1f}s "
        f"({TRAININGS / elapsed:.0f}/s), {dict(statuses)}; peak during the run {peak}; "
        f"{memory_report(rss_before, rss_after, before, after)}; finished markers in "
        f"task_metadata {before['finished_entries']} -> {after['finished_entries']}"
    )
    assert statuses == {JobStatus.COMPLETED.name: TRAININGS}
    assert len(trainer._futures) <= 1
    our_trainings = [n for n in client.list_datasets() if str(n).startswith(DATASET_PREFIX)]
    assert len(our_trainings) <= 1, our_trainings
    # Bounded by about one batch while it runs ...
    assert all(peak[key] <= before[key] + 2 * BATCH for key in COUNTED), (before, peak)
    # ... and back to (at most) the one last training after. Besides tasks, futures and
    # datasets this covers the scheduler's "finished" markers (task_metadata) and the
    # "published-<dataset>" pseudo-clients that distributed's publish extension creates
    # per dataset name and never removes.
    assert not leaks(before, after, allowance=1), leaks(before, after, allowance=1)
    assert (after["scheduler_rss"] - before["scheduler_rss"]) / MB < 30
    assert (rss_after - rss_before) / MB < 30
