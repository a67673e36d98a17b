"""End to end: a real ``caikit.runtime`` serves three times more model memory than its Dask
cluster has, through ``eviction: lru`` and ``lazy: true``.

Two ``dask worker --memory-limit 500MB`` processes with ``memory_fraction`` sized from their
measured memory (``memory_fraction_for``) give models about 100 MB per worker: two 40 MiB
models each, four on the cluster. The runtime's local models
directory holds twelve (three times that). caikit's lazy-load sync finds them; the DASK
initializer loads each on its first request, evicting the least recently called models of a
full worker. Removing a model's directory makes caikit's sync unload it, which must free its
worker memory: its booking on the scheduler goes, its actor leaves the worker, the worker's
RSS drops. The models are larger than glibc's largest mmap threshold (32 MiB), so freeing one
really returns its pages to the OS.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable

import pytest
from cluster_support import TESTS_DIR, ProcessCluster, actor_keys_on_workers, poll, process_cluster
from memory_testlib import MB, memory_fraction_for, save_memory_model
from runtime_server import HERE, RuntimeServer

from caikit_dask.loading.scheduler.books import MEMORY

pytestmark = pytest.mark.slow

MODEL_MB = 40
WORKER_MODELS = 2  # room for 2.5 models per worker above its own memory
MODELS = 3 * 2 * WORKER_MODELS  # three times the cluster's model memory
LIBRARY = "memory_testlib"
METHOD = "ExampleTextClassificationTaskPredict"
TASK = "example-text-classification"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterable[ProcessCluster]:
    workers = {name: {"memory_limit": "500MB"} for name in ("a", "b")}
    with process_cluster(tmp_path_factory.mktemp("dask"), workers) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def runtime(cluster, caikit_runtime_module_factory, tmp_path_factory) -> RuntimeServer:
    """The runtime library is ``memory_testlib`` (tests/ goes on the runtime's path)."""
    source = tmp_path_factory.mktemp("memory-models")
    models = {
        f"memory-{i}": save_memory_model(str(source / f"memory-{i}"), MODEL_MB)
        for i in range(MODELS)
    }
    initializer = {
        "type": "DASK",
        "config": {
            "connection": {"address": cluster.address, "timeout": "20s"},
            "memory_fraction": memory_fraction_for(cluster.client, WORKER_MODELS + 0.5, MODEL_MB),
            "eviction": "lru",
            "lazy": True,
            "call_timeout": "60s",
            "health_check_period": "0.5s",
        },
    }
    config = {
        "model_management": {"initializers": {"default": initializer}},
        "runtime": {
            "lazy_load_local_models": True,
            "lazy_load_poll_period_seconds": 0.5,
            "lazy_load_write_detection_period_seconds": 0,
        },
    }
    with pytest.MonkeyPatch.context() as patch:
        python_path = [str(TESTS_DIR), str(HERE), os.environ.get("PYTHONPATH", "")]
        patch.setenv("PYTHONPATH", os.pathsep.join(python_path).rstrip(os.pathsep))
        return caikit_runtime_module_factory(config=config, library=LIBRARY, models=models)


def _service(runtime: RuntimeServer) -> str:
    (service,) = [s for s in runtime.grpc_services() if s.endswith("MemoryTestlibService")]
    return service


def _bookings(cluster: ProcessCluster) -> dict[str, dict[str, dict]]:
    """The scheduler's memory book: {worker: {actor key: booking}}."""
    return cluster.client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.task_metadata.get(MEMORY) or {}
    )


def _rss(cluster: ProcessCluster, worker: str) -> int:
    def measure():
        import psutil

        return psutil.Process().memory_info().rss

    return cluster.client.run(measure, workers=[worker])[worker]


def test_every_model_answers_and_a_removed_model_frees_its_worker_memory(runtime, cluster):
    service = _service(runtime)
    models_dir = runtime.models_dir
    model_ids = sorted(os.listdir(models_dir))
    assert len(model_ids) == MODELS
    started = time.monotonic()
    for model_id in model_ids:
        reply = runtime.grpc_call(f"{service}/{METHOD}", {"text": "hi"}, model_id=model_id)
        assert reply["score"] == MODEL_MB * MB, (model_id, reply)
        response = runtime.http_predict(TASK, model_id, "hi")
        assert response.status_code == 200, response.text
        assert response.json()["score"] == MODEL_MB * MB
        assert {reply["label"], response.json()["label"]} != {str(runtime.process.pid)}
    print(f"{MODELS} models answered over gRPC and HTTP in {time.monotonic() - started:.1f}s")
    bookings = _bookings(cluster)
    # Room is measured (each worker's process memory), so how many fit moves with the
    # workers' own memory; what must hold is that fewer than all stay resident and that no
    # worker came near Dask's pause threshold.
    assert sum(len(booked) for booked in bookings.values()) < MODELS
    for status, fraction in cluster.client.run_on_scheduler(
        lambda dask_scheduler: [
            (w.status.name, w.memory.process / w.memory_limit)
            for w in dask_scheduler.workers.values()
        ]
    ):
        assert status == "running" and fraction < 0.8, (status, fraction)

    removed = model_ids[-1]  # the last one called: resident
    removed_path = str(models_dir / removed)
    ((worker, key),) = [
        (worker, key)
        for worker, booked in bookings.items()
        for key, booking in booked.items()
        if os.path.basename(str(booking["model"]).rstrip("/")) == removed
    ]
    assert key in actor_keys_on_workers(cluster.client)
    rss_before = _rss(cluster, worker)
    shutil.rmtree(removed_path)

    def freed() -> bool:
        keys = {key for booked in _bookings(cluster).values() for key in booked}
        return key not in keys and key not in actor_keys_on_workers(cluster.client)

    poll(freed, 30, interval=0.2, what="the removed model's booking and actor to go")
    poll(
        lambda: _rss(cluster, worker) < rss_before - MODEL_MB * MB * 0.75,
        10,
        interval=0.2,
        what="the worker's RSS to drop by the removed model",
    )
    other = model_ids[0]  # the others still answer (reloading if evicted)
    reply = runtime.grpc_call(f"{service}/{METHOD}", {"text": "hi"}, model_id=other)
    assert reply["score"] == MODEL_MB * MB
