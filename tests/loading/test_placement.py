"""Placements are booked on the scheduler in one step: concurrent loads and releases agree.

The session cluster has two workers with one GPU each.
"""

import pytest
from cluster_support import run_in_threads
from dask_testlib import save_fault_model

from caikit_dask import DaskBackend
from caikit_dask.errors import DaskBackendError
from caikit_dask.loading.placement import PLACEMENTS


def booked(observer) -> dict[str, dict]:
    """The placement book: worker -> {actor key: resources}."""

    def read(dask_scheduler):
        return {w: dict(a) for w, a in (dask_scheduler.task_metadata.get(PLACEMENTS) or {}).items()}

    return observer.run_on_scheduler(read)


def gpus_booked(observer) -> dict[str, float]:
    return {
        worker: sum(resources.get("GPU", 0) for resources in actors.values())
        for worker, actors in booked(observer).items()
    }


@pytest.fixture
def slow_model(tmp_path):
    """Loading takes a while: long enough for concurrent loads to overlap."""
    return save_fault_model(str(tmp_path / "slow"), load_seconds=0.5)


def test_concurrent_gpu_loads_never_share_a_gpu(local_cluster, observer, slow_model):
    assert not any(gpus_booked(observer).values()), "another test left a GPU model loaded"
    # Two clients (two connections), three threads each: six loads for two GPUs.
    backends = [
        DaskBackend({"connection": {"address": local_cluster.scheduler_address, "timeout": t}})
        for t in ("20s", "21s")
    ]
    resources = {"resources": {"GPU": 1}, "call_timeout": "30s"}
    for backend in backends:
        backend.register_config(resources)
    outcomes = run_in_threads(lambda i: backends[i % 2].load(slow_model), 6)
    models = [value for value, _ in outcomes if not isinstance(value, Exception)]
    errors = [value for value, _ in outcomes if isinstance(value, Exception)]
    try:
        assert all(isinstance(err, DaskBackendError) for err in errors), errors
        assert all("Cannot place the model" in str(err) for err in errors), errors
        workers = [model.replicas[0]["worker"] for model in models]
        assert len(workers) == len(set(workers)) == 2, f"GPU workers double-booked: {workers}"
        assert sorted(gpus_booked(observer).values()) == [1, 1]
    finally:
        for model in models:
            model.close()
        for backend in backends:
            backend.stop()
    assert not any(gpus_booked(observer).values())


def test_concurrent_releases_leave_nothing_booked(connection, observer, tmp_path):
    path = save_fault_model(str(tmp_path / "fault"))
    before = {k for actors in booked(observer).values() for k in actors}
    backend = DaskBackend({"connection": connection})
    models = [backend.load(path) for _ in range(8)]
    keys = {r["key"] for model in models for r in model.replicas}
    assert keys <= {k for actors in booked(observer).values() for k in actors}
    outcomes = run_in_threads(lambda i: models[i].close(), len(models))
    assert [value for value, _ in outcomes] == [None] * len(models)
    left = {k for actors in booked(observer).values() for k in actors} - before
    assert not left, f"released placements still booked: {left}"
