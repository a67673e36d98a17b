"""Placements are booked on the scheduler in one step: concurrent loads and releases agree.

The session cluster has two workers with one GPU each.
"""

import contextlib
import json
import subprocess
import sys
import textwrap

import pytest
from cluster_support import run_in_threads, worker_env
from dask_testlib import save_fault_model

from caikit_dask import DaskBackend
from caikit_dask.errors import DaskBackendError
from caikit_dask.loading.scheduler.books import PLACEMENTS


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


OTHER_PROCESS = textwrap.dedent(
    """
    import json, sys
    import dask_testlib  # registers the fault module
    from caikit_dask import DaskBackend
    backend = DaskBackend({"connection": {"address": sys.argv[1]}, "resources": {"GPU": 1},
                           "call_timeout": "30s"})
    backend.start()
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        model = backend.load(sys.argv[2])
        print(json.dumps({"worker": model.replicas[0]["worker"]}), flush=True)
        sys.stdin.readline()  # held until the test has looked
        model.close()
    except Exception as err:
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}), flush=True)
    backend.stop()
    """
)


def test_concurrent_gpu_loads_never_share_a_gpu(local_cluster, observer, slow_model):
    """Two processes, two clients in one of them, three threads each: 7 loads for 2 GPUs."""
    assert not any(gpus_booked(observer).values()), "another test left a GPU model loaded"
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, local_cluster.scheduler_address, slow_model],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    backends = [
        DaskBackend({"connection": {"address": local_cluster.scheduler_address, "timeout": t}})
        for t in ("20s", "21s")
    ]
    models = []
    try:
        for backend in backends:
            backend.register_config({"resources": {"GPU": 1}, "call_timeout": "30s"})
            backend.start()
        assert other.stdout.readline().strip() == "ready"
        other.stdin.write("go\n")
        other.stdin.flush()
        outcomes = run_in_threads(lambda i: backends[i % 2].load(slow_model), 6)
        models = [value for value, _ in outcomes if not isinstance(value, Exception)]
        errors = [value for value, _ in outcomes if isinstance(value, Exception)]
        from_other = json.loads(other.stdout.readline())
        assert all(isinstance(err, DaskBackendError) for err in errors), errors
        assert all("Cannot place the model" in str(err) for err in errors), errors
        assert "Cannot place the model" in from_other.get("error", "Cannot place the model")
        workers = [model.replicas[0]["worker"] for model in models]
        workers += [from_other["worker"]] if "worker" in from_other else []
        assert len(workers) == len(set(workers)) == 2, f"GPU workers double-booked: {workers}"
        assert sorted(gpus_booked(observer).values()) == [1, 1]
    finally:
        with contextlib.suppress(OSError):  # it may have ended already
            other.communicate("done\n", timeout=30)
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


UNPICKLE_WITHOUT_CAIKIT_DASK = textwrap.dedent(
    """
    import pickle, sys, types
    sys.modules["caikit_dask"] = None  # as on a scheduler without caikit-dask installed
    reserve = pickle.loads(sys.stdin.buffer.read())
    scheduler = types.SimpleNamespace(
        task_metadata={}, workers={"w1": types.SimpleNamespace(resources={"GPU": 1})}
    )
    print(reserve(["k1", "k2"], {"GPU": 1}, [], [], dask_scheduler=scheduler))
    """
)


def test_the_scheduler_needs_no_caikit_dask():
    from distributed.protocol.pickle import dumps

    from caikit_dask.loading.scheduler import booking

    result = subprocess.run(
        [sys.executable, "-c", UNPICKLE_WITHOUT_CAIKIT_DASK],
        input=dumps(booking.reserve),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().strip() == "{'placed': [['w1', 'k1']], 'evicted': [], 'bytes': 0}"
