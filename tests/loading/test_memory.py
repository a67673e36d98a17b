"""Models placed by memory: workers with ``--memory-limit`` hold models whose weights are
really resident; a model that fits nowhere fails fast, or evicts the least recently
called models (``eviction: lru``), which reload on their next call; ``lazy`` loads on
the first call.

Two ``dask worker --memory-limit 800MB`` processes; ``memory_fraction`` is set so that
the ceiling placement fills a worker to (that fraction of Dask's pause threshold, see
``scheduler.plan``) is the workers' own measured memory plus 3.5 models: three 100 MiB
models each, not four, and never past Dask's pause threshold.
"""

import contextlib
import itertools
import json
import re
import subprocess
import sys
import textwrap
import threading
import time

import dask
import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import actor_keys_on_workers, poll, run_in_threads, worker_env
from memory_testlib import MB, memory_fraction_for, save_memory_model, warm_up

from caikit_dask import DaskModelInitializer
from caikit_dask.errors import DaskBackendError
from caikit_dask.loading.proxy import replica_set_of
from caikit_dask.loading.scheduler.books import MEMORY
from caikit_dask.loading.upkeep.eviction import evict

pytestmark = pytest.mark.slow

MODEL_MB = 100
_names = itertools.count()


LIMIT = 800e6


def worker_process_memory(client, after: float = 0) -> dict[str, int]:
    """Each worker's process memory at its first heartbeat after ``after`` (time.time())."""

    def measured():
        workers = client.run_on_scheduler(
            lambda dask_scheduler: {
                a: (w.memory.process, w.last_seen) for a, w in dask_scheduler.workers.items()
            }
        )
        if all(seen > after for _, seen in workers.values()):
            return {address: process for address, (process, _) in workers.items()}
        return None

    return poll(measured, 30, what="a heartbeat from every worker")


@pytest.fixture
def cluster(process_cluster):
    for name in ("a", "b"):
        process_cluster.add_worker(name, memory_limit="800MB")
    process_cluster.memory_fraction = memory_fraction_for(process_cluster.client, 3.5, MODEL_MB)
    return process_cluster


def _initializer(cluster, **config):
    settings = {
        "connection": {"address": cluster.address},
        "memory_fraction": cluster.memory_fraction,
        "call_timeout": "30s",
        "health_check_period": "0.5s",
        **config,
    }
    return DaskModelInitializer(settings, f"memory-{next(_names)}")


def _models(tmp_path, count, megabytes=MODEL_MB, **options):
    return [
        save_memory_model(str(tmp_path / f"model-{i}"), megabytes, **options) for i in range(count)
    ]


def _booked(client) -> dict[str, int]:
    """Bytes of models booked per worker."""

    def read(dask_scheduler):
        book = dask_scheduler.task_metadata.get(MEMORY) or {}
        return {w: sum(b["bytes"] for b in models.values()) for w, models in book.items()}

    return client.run_on_scheduler(read)


def _resident(proxy) -> bool:
    return [r["state"] for r in proxy.replicas] == ["resident"]


def test_models_fill_the_workers_by_memory_then_the_next_fails_fast(cluster, tmp_path):
    """Room for about three per worker (the workers' own memory moves a little)."""
    initializer = _initializer(cluster)
    paths = _models(tmp_path, 9)
    models, failure = [], None
    for path in paths:
        started = time.monotonic()
        try:
            models.append(initializer.init(ModuleConfig.load(path)))
        except DaskBackendError as err:
            failure, took = err, time.monotonic() - started
            break
    assert failure is not None, "nine 100 MiB models fit"
    per_worker = {}
    for model in models:
        per_worker.setdefault(model.replicas[0]["worker"], []).append(model)
    assert len(per_worker) == 2 and all(2 <= len(m) <= 4 for m in per_worker.values())
    # about 3.5 a worker; the workers' own memory falls after warm-up, which makes room
    assert 5 <= len(models) <= 8, len(models)
    for worker, booked in _booked(cluster.client).items():
        assert MODEL_MB * MB * 2 <= booked <= 4.5 * MODEL_MB * MB, (worker, booked)
    assert all(m.run("hi").score == MODEL_MB * MB for m in models)
    assert took < 5, took
    message = str(failure)
    assert "memory" in message
    assert re.search(r"model's 10\d\.\d\d MiB", message)  # its size (or the largest measured)
    for worker in per_worker:
        assert worker in message  # each worker's free model memory
    assert "eviction: lru" in message and "--memory-limit" in message
    statuses = cluster.client.run_on_scheduler(
        lambda dask_scheduler: [w.status.name for w in dask_scheduler.workers.values()]
    )
    assert statuses == ["running", "running"]
    for model in models:
        model.close()
    poll(lambda: not _booked(cluster.client), 10, what="bookings released")


OTHER_PROCESS = textwrap.dedent(
    """
    import json, sys
    import memory_testlib  # registers the memory module
    from caikit_dask import DaskBackend
    backend = DaskBackend({"connection": {"address": sys.argv[1]},
                           "memory_fraction": float(sys.argv[2]), "call_timeout": "60s"})
    backend.start()
    print("ready", flush=True)
    sys.stdin.readline()
    outcomes = []
    for path in sys.argv[3:]:
        try:
            model = backend.load(path)
            outcomes.append({"worker": model.replicas[0]["worker"]})
        except Exception as err:
            outcomes.append({"error": f"{type(err).__name__}: {err}"})
    print(json.dumps(outcomes), flush=True)
    sys.stdin.readline()  # held until the test has looked
    backend.stop()
    """
)


def test_concurrent_loads_from_two_processes_never_overbook_a_worker(cluster, tmp_path):
    """Eight loads at once, from two clients here and another process: room for six."""
    paths = _models(tmp_path, 8)
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            OTHER_PROCESS,
            cluster.address,
            str(cluster.memory_fraction),
            *paths[6:],
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    initializers = [
        _initializer(cluster, connection={"address": cluster.address, "timeout": timeout})
        for timeout in ("20s", "21s")  # two connections: two clients
    ]
    loaded = []
    try:
        assert other.stdout.readline().strip() == "ready"
        other.stdin.write("go\n")
        other.stdin.flush()
        outcomes = run_in_threads(
            lambda i: initializers[i % 2].init(ModuleConfig.load(paths[i])), 6, join_timeout=120
        )
        from_other = json.loads(other.stdout.readline())
        assert None not in outcomes, "a load hung"
        loaded = [value for value, _ in outcomes if not isinstance(value, BaseException)]
        failed = [str(value) for value, _ in outcomes if isinstance(value, BaseException)]
        failed += [outcome["error"] for outcome in from_other if "error" in outcome]
        placed = len(loaded) + sum("worker" in o for o in from_other)
        assert 5 <= placed <= 7, (outcomes, from_other)  # about three per worker
        assert len(failed) == 8 - placed and all("memory" in err for err in failed), failed
        for booked in _booked(cluster.client).values():
            assert booked <= 4.5 * MODEL_MB * MB
    finally:
        with contextlib.suppress(OSError):
            other.communicate("done\n", timeout=30)
        for model in loaded:
            model.close()


def test_lru_evicts_the_least_recently_called_and_reloads_it_on_its_next_call(cluster, tmp_path):
    initializer = _initializer(cluster, eviction="lru")
    paths = _models(tmp_path, 9)
    models = [initializer.init(ModuleConfig.load(paths[0]))]
    victim = models[0]
    victim_key = victim.replicas[0]["key"]
    for path in paths[1:]:  # load until the workers are full and a load evicts
        for model in models[1:]:
            model.run("hi")  # every other model is more recently called
        started = time.monotonic()
        newcomer = initializer.init(ModuleConfig.load(path))
        load_took = time.monotonic() - started
        if not _resident(victim):
            break
        models.append(newcomer)
    assert len(models) >= 4
    # It went where the victim was, or the victim's worker had grown past its ceiling
    # (the workers' own memory moves) and evicted it first: either way the LRU model.
    assert _resident(newcomer)
    assert [r["state"] for r in victim.replicas] == ["evicted"]
    assert "evicted" in repr(victim)
    assert all(_resident(m) for m in models[1:])
    poll(
        lambda: victim_key not in actor_keys_on_workers(cluster.client),
        10,
        what="the evicted actor to leave its worker",
    )

    started = time.monotonic()
    assert victim.run("hi").score == MODEL_MB * MB  # the proxy stays valid: it reloads
    reload_took = time.monotonic() - started
    assert _resident(victim)
    # Room is measured (process memory from heartbeats), so whether the reload had to evict
    # in turn depends on what the workers' own memory did meanwhile (it falls after their
    # warm-up); what must hold is that no worker got near Dask's pause threshold.
    for status, fraction in cluster.client.run_on_scheduler(
        lambda dask_scheduler: [
            (w.status.name, w.memory.process / w.memory_limit)
            for w in dask_scheduler.workers.values()
        ]
    ):
        assert status == "running" and fraction < 0.8, (status, fraction)
    for booked in _booked(cluster.client).values():
        assert booked <= 4.5 * MODEL_MB * MB
    print(f"load with eviction {load_took:.2f}s, reload on call {reload_took:.2f}s")
    for model in [*models, newcomer]:
        model.close()


def test_a_call_in_flight_finishes_before_its_model_is_released(cluster, tmp_path):
    initializer = _initializer(cluster, eviction="lru")
    [path] = _models(tmp_path, 1, megabytes=10)
    model = initializer.init(ModuleConfig.load(path))
    key = model.replicas[0]["key"]
    outcome = {}

    def slow_call():
        outcome["result"] = model.run("sleep:1.5")

    caller = threading.Thread(target=slow_call)
    caller.start()
    poll(lambda: model.replicas[0]["outstanding"] == 1, 10, what="the call to start")
    assert evict(replica_set_of(model), key)  # as the scheduler's eviction notice does
    assert key in actor_keys_on_workers(cluster.client)  # still answering its call
    caller.join(30)
    assert outcome["result"].score == 10 * MB
    poll(lambda: key not in actor_keys_on_workers(cluster.client), 10, what="release")
    assert model.run("hi").score == 10 * MB  # and it reloads
    model.close()


def test_a_model_measured_larger_than_on_disk_books_its_measured_size(cluster, tmp_path):
    """The first estimate is the size on disk; the measurement is remembered per path."""
    initializer = _initializer(cluster)
    path = save_memory_model(str(tmp_path / "in-memory"), MODEL_MB, on_disk=False)
    model = initializer.init(ModuleConfig.load(path))
    assert model.replicas[0]["bytes"] >= MODEL_MB * MB
    assert sum(_booked(cluster.client).values()) >= MODEL_MB * MB
    measured = cluster.client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.task_metadata["caikit-dask-measured"][path]
    )
    assert measured >= MODEL_MB * MB
    model.close()


def test_lazy_loads_on_the_first_call_and_fails_it_with_the_loads_reason(cluster, tmp_path):
    initializer = _initializer(cluster, lazy=True)
    [path] = _models(tmp_path, 1, megabytes=10)
    broken = save_memory_model(str(tmp_path / "broken"), 1, fail_with="weights are corrupt")
    started = time.monotonic()
    model = initializer.init(ModuleConfig.load(path))
    failing = initializer.init(ModuleConfig.load(broken))
    assert time.monotonic() - started < 1
    assert [r["state"] for r in model.replicas] == ["not loaded (lazy)"]
    assert not actor_keys_on_workers(cluster.client)

    assert model.run("hi").score == 10 * MB
    assert _resident(model)
    with pytest.raises(ValueError, match="weights are corrupt"):
        failing.run("hi")
    with pytest.raises(ValueError, match="weights are corrupt"):
        failing.run("hi")  # the next call tries again
    with pytest.raises(FileNotFoundError):
        initializer.init(ModuleConfig.load(str(tmp_path / "missing")))
    model.close()
    failing.close()


def test_killing_a_worker_that_holds_evictable_models(cluster, tmp_path):
    cluster.add_worker("c", memory_limit="800MB")
    cluster.client.run(warm_up)
    initializer = _initializer(cluster, eviction="lru")
    paths = _models(tmp_path, 9)
    models = [initializer.init(ModuleConfig.load(path)) for path in paths]
    victim = next(m.replicas[0]["worker"] for m in models if _resident(m))
    cluster.kill_worker(cluster.worker_name_at(victim))
    started = time.monotonic()
    for _ in range(2):
        for model in models:
            assert model.run("hi").score == MODEL_MB * MB
    print(f"all 9 answered twice after the kill in {time.monotonic() - started:.1f}s")
    pause = dask.config.get("distributed.worker.memory.pause")
    for process in worker_process_memory(cluster.client, time.time() + 0.5).values():
        assert process < pause * LIMIT  # the workers' own memory differs: not a count
    assert victim not in _booked(cluster.client)
    for model in models:
        model.close()
