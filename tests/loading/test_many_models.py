"""Many models on few workers: one thread pool per worker, and no model starves the others."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dask.config
import psutil
import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll, run_in_threads
from dask_testlib import save_fault_model

from caikit_dask import DaskModelInitializer
from caikit_dask.loading.actor.worker_pool import CONFIG_KEY, pool_size

POOL_THREAD = "caikit-dask-model"


def _load_many(connection, tmp_path, count: int) -> list:
    paths = [save_fault_model(str(tmp_path / f"model-{i}")) for i in range(count)]
    initializer = DaskModelInitializer({"connection": connection}, "many-models")
    with ThreadPoolExecutor(8) as loaders:  # as caikit.runtime loads models: a few at a time
        return list(loaders.map(lambda path: initializer.init(ModuleConfig.load(path)), paths))


def _threads_per_worker(observer) -> dict[str, tuple[int, int]]:
    """Per worker: OS threads of the process, and threads of the model pool."""

    def count() -> tuple[int, int]:
        pool = sum(t.name.startswith(POOL_THREAD) for t in threading.enumerate())
        return psutil.Process().num_threads(), pool

    return observer.run(count)


def _every_model_answers(proxies: list) -> None:
    """Call every model, from 8 threads at once (so each actor is asked concurrently)."""
    with ThreadPoolExecutor(8) as callers:
        outcomes = list(callers.map(lambda proxy: proxy.run("hello").label, proxies))
    assert all(label.isdigit() for label in outcomes), outcomes[:5]


@pytest.fixture
def many_models(connection, tmp_path):
    proxies = _load_many(connection, tmp_path, 200)
    yield proxies
    for proxy in proxies:
        proxy.close()


def test_models_on_a_worker_share_one_bounded_thread_pool(many_models, observer):
    workers = {proxy.replicas[0]["worker"] for proxy in many_models}
    assert len(workers) == 2, "200 models should spread over both workers"
    for _ in range(3):
        _every_model_answers(many_models)
    for worker, (threads, pool) in _threads_per_worker(observer).items():
        assert threads < 100, f"{worker} runs {threads} threads for 100 models"
        assert 1 <= pool <= 8, f"{worker} runs {pool} model pool threads (pool size 8)"


def test_a_slow_model_leaves_pool_threads_to_the_models_beside_it(connection, tmp_path):
    slow, *others = _load_many(connection, tmp_path, 5)
    try:
        worker = slow.replicas[0]["worker"]
        beside = [proxy for proxy in others if proxy.replicas[0]["worker"] == worker]
        assert beside, "placement spreads models, so one shares the slow model's worker"
        # As many slow calls as the pool has threads: without a per-model limit they
        # would take every thread of the worker's pool.
        flood = threading.Thread(target=run_in_threads, args=(lambda _: slow.run("sleep:2"), 8))
        flood.start()
        poll(lambda: slow.replicas[0]["outstanding"] >= 8, 10, what="8 slow calls in flight")
        started = time.monotonic()
        for proxy in beside:
            assert proxy.run("fast").label.isdigit()
        waited = time.monotonic() - started
        assert waited < 1.0, f"a model beside the slow one waited {waited:.1f}s for a thread"
        flood.join(30)
        assert not flood.is_alive()
    finally:
        for proxy in (slow, *others):
            proxy.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_thousand_models_load_within_a_minute_and_all_answer(connection, tmp_path, observer):
    started = time.monotonic()
    proxies = _load_many(connection, tmp_path, 1000)
    try:
        took = time.monotonic() - started
        assert took < 60, f"1,000 tiny models took {took:.0f}s to load"
        _every_model_answers(proxies)
        for worker, (threads, _) in _threads_per_worker(observer).items():
            assert threads < 100, f"{worker} runs {threads} threads for ~500 models"
    finally:
        for proxy in proxies:
            proxy.close()


def test_pool_size_follows_the_dask_config():
    with dask.config.set({CONFIG_KEY: 3}):
        assert pool_size() == 3
    with dask.config.set({CONFIG_KEY: 0}), pytest.raises(ValueError, match=CONFIG_KEY):
        pool_size()
    assert pool_size() == 8, "outside a worker: the default, at least 8"
