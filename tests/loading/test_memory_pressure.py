"""Placement by what workers really hold: the issue's case with the default configuration.

Two nanny-managed ``dask worker --memory-limit 1GB`` processes and models that hold
300 MB once loaded (a few hundred bytes on disk). A sampler watches every worker's
process memory (as its heartbeats report it) and status the whole time: no worker may
reach Dask's pause threshold, be paused, or be restarted by its nanny.
"""

import itertools
import threading
import time

import dask
import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll
from memory_testlib import save_memory_model, warm_up

from caikit_dask import DaskModelInitializer
from caikit_dask.errors import DaskBackendError

pytestmark = pytest.mark.slow

LIMIT = 1e9
_names = itertools.count()


class Sampler:
    """Every worker's process memory as a fraction of its limit, and its status."""

    def __init__(self, client):
        self.client, self.peak, self.statuses, self.addresses = client, 0.0, set(), set()
        self.samples, self.errors = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.2):
            self.take()

    def take(self):
        try:
            workers = self._sample()
        except Exception as err:  # noqa: BLE001 - the cluster is closing at the end
            self.errors.append(err)
            return
        self.samples += 1
        for address, (fraction, status) in workers.items():
            self.peak = max(self.peak, fraction)
            self.statuses.add(status)
            self.addresses.add(address)

    def _sample(self):
        return self.client.run_on_scheduler(
            lambda dask_scheduler: {
                a: (w.memory.process / w.memory_limit, w.status.name)
                for a, w in dask_scheduler.workers.items()
            }
        )

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.take()  # the state the test ended in (a short test gets few samples)
        pause = dask.config.get("distributed.worker.memory.pause")
        print(
            f"\nlargest worker process memory: {self.peak:.2f} of its memory limit "
            f"({self.samples} samples, {len(self.errors)} failed)"
        )
        assert self.samples >= 3, self.errors[:3]
        assert self.statuses == {"running"}, self.statuses
        assert len(self.addresses) == 2, "a worker was restarted"
        assert self.peak < pause


@pytest.fixture
def cluster(process_cluster):
    for name in ("a", "b"):
        process_cluster.add_worker(name, memory_limit="1GB", nanny=True)
    process_cluster.client.run(warm_up)
    sampler = process_cluster.sampler = Sampler(process_cluster.client)
    yield process_cluster
    sampler.stop()


def _initializer(cluster, **config):
    settings = {
        "connection": {"address": cluster.address},
        "call_timeout": "30s",
        "health_check_period": "0.5s",
        **config,
    }
    return DaskModelInitializer(settings, f"pressure-{next(_names)}")


def _models(tmp_path, count, megabytes=300):
    """Models holding ``megabytes`` once loaded, nothing on disk (only a measurement knows)."""
    return [
        save_memory_model(str(tmp_path / f"m{i}"), megabytes, on_disk=False) for i in range(count)
    ]


def test_default_config_without_eviction_fails_at_once_naming_memory(cluster, tmp_path):
    initializer = _initializer(cluster)
    loaded = []
    for path in _models(tmp_path, 6):
        started = time.monotonic()
        try:
            loaded.append(initializer.init(ModuleConfig.load(path)))
        except DaskBackendError as err:
            failure = err
            took = time.monotonic() - started
            assert "memory" in str(err) and "pause threshold" in str(err)
            assert took < 5, took
            break
    else:
        pytest.fail("six 300 MB models fit two 1 GB workers")
    print(f"\n{len(loaded)} models of 300 MB fit; the next failed at once: {failure}")
    assert len(loaded) >= 2
    assert all(m.run("hi").label for m in loaded)
    sampler = cluster.sampler
    poll(lambda: sampler.take() or sampler.peak > 0.3, 10, what="the models in a heartbeat")
    for model in loaded:
        model.close()


def test_default_config_with_lru_serves_all_eight_in_turn(cluster, tmp_path):
    initializer = _initializer(cluster, eviction="lru", lazy=True)
    models = [initializer.init(ModuleConfig.load(path)) for path in _models(tmp_path, 8)]
    for _ in range(2):
        for model in models:
            assert model.run("hi").score == 300 * 2**20
    for model in models:
        model.close()


def _state(model):
    return [r["state"] for r in model.replicas]


def _process(client, worker, after):
    """The worker's process memory and its ceiling, at a heartbeat after ``after``."""
    pause = dask.config.get("distributed.worker.memory.pause")

    def measured(dask_scheduler):
        state = dask_scheduler.workers[worker]
        return state.last_seen, state.memory.process

    seen, process = poll(
        lambda: (lambda m: m if m[0] > after else None)(client.run_on_scheduler(measured)),
        10,
        what="a heartbeat",
    )
    return process, 0.8 * pause * LIMIT  # the default memory_fraction


def test_a_model_growing_after_its_load_is_evicted_before_the_worker_pauses(cluster, tmp_path):
    initializer = _initializer(cluster, eviction="lru")
    cold, _filler, hot = (
        initializer.init(ModuleConfig.load(path)) for path in _models(tmp_path, 3, megabytes=50)
    )
    worker = hot.replicas[0]["worker"]
    assert cold.replicas[0]["worker"] == worker  # the least loaded worker first: a, b, a
    cold.run("hi")
    hot.run("hi")  # the cold one is the least recently called
    for _ in range(30):  # up to 1.5 GB more: far past the pause threshold
        hot.run("grow:50")
        if _state(cold) == ["evicted"]:
            break
        time.sleep(1)  # the pace of the growth: 50 MB a second
    assert _state(cold) == ["evicted"]
    assert cold.run("hi").label  # it loads again, where there is room
    for model in (cold, _filler, hot):
        model.close()


def test_without_eviction_a_grown_worker_takes_no_more_models(cluster, tmp_path, caplog):
    initializer = _initializer(cluster)
    [path, other] = _models(tmp_path, 2, megabytes=20)
    model = initializer.init(ModuleConfig.load(path))
    worker = model.replicas[0]["worker"]
    process, ceiling = _process(cluster.client, worker, time.time())
    while process < ceiling + 30e6:  # past the ceiling, short of the pause threshold
        model.run("grow:25")
        process, ceiling = _process(cluster.client, worker, time.time())
    poll(
        lambda: "<DSK50000033W>" in caplog.text and worker in caplog.text,
        30,
        what="the worker logged as over its ceiling",
    )
    placed = initializer.init(ModuleConfig.load(other))
    assert placed.replicas[0]["worker"] != worker
    rounds = caplog.text.count("Health check")  # more rounds pass: still logged once
    time.sleep(2)
    assert caplog.text.count("<DSK50000033W>") == 1, rounds
    placed.close()
    model.close()
