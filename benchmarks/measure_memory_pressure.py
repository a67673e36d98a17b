"""Benchmark 9: more models than memory, with ``eviction: lru``.

Its own ``LocalCluster`` (2 workers with a ``memory_limit``) and models of
``plan.pressure_model_mb`` whose weights are really resident (``BenchMemory``),
three times as many as the workers' model memory (``memory_limit x
pressure_fraction`` each, above the workers' own memory: ``memory_fraction`` is set
from the workers' measured memory, see ``_memory_fraction``) holds, loaded ``lazy``.
Measured in the same run: one resident model (calls/s, call latency), then calls/s
when 80% of calls go to 20% of the models (skewed) and when every model is as likely
(uniform), and the latency of a call whose model was evicted (it reloads, evicting another).
"""

from __future__ import annotations

import importlib
import math
import random
import statistics
import threading
import time
from typing import Any

from .session import Benchmark
from .stats import percentile, threaded_rate

WORKERS = 2
PRESSURE = 3.0  # model memory / the cluster's model memory
HOT_SHARE, HOT_CALLS = 0.2, 0.8
ONE_MODEL_CALLS = 200
RELOAD_CYCLES = 2


class MemoryPressureBenchmark(Benchmark):
    sections = ("memory_pressure",)

    def prepare(self) -> None:
        from dask.utils import parse_bytes

        from .modules import BenchMemory

        plan = self.plan
        self.model_bytes = int(plan.pressure_model_mb * 2**20)
        self.capacity = WORKERS * parse_bytes(plan.pressure_memory_limit) * plan.pressure_fraction
        count = math.ceil(PRESSURE * self.capacity / self.model_bytes)
        model = BenchMemory.train(plan.pressure_model_mb)
        root = self.session.workdir / "pressure"
        self.paths = [str(root / f"memory-{i}") for i in range(count)]
        for path in self.paths:
            model.save(path)

    def memory_pressure(self) -> dict:
        from distributed import Client, LocalCluster

        plan = self.plan
        cluster = LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=plan.pressure_memory_limit,
        )
        from caikit_dask.connection import DaskConnection

        client = Client(cluster, set_as_default=False)
        try:
            client.run(importlib.import_module, "benchmarks.modules")
            return self._measure(cluster.scheduler_address, client)
        finally:
            # The models' connection goes with this cluster (else it retries to reconnect).
            DaskConnection.from_config({"address": cluster.scheduler_address}).close()
            client.close()
            cluster.close(timeout=30)

    def _measure(self, address: str, client: Any) -> dict:
        from caikit.core.modules import ModuleConfig

        from caikit_dask import DaskModelInitializer

        plan, threads, duration = self.plan, self.plan.pressure_threads, self.plan.many_duration
        fraction = _memory_fraction(client, self.capacity / WORKERS)
        initializer = DaskModelInitializer(
            {
                "connection": {"address": address},
                "memory_fraction": fraction,
                "eviction": "lru",
                "lazy": True,
                "call_timeout": "120s",
            },
            "bench-pressure",
        )
        proxies = [initializer.init(ModuleConfig.load(path)) for path in self.paths]
        try:
            one = proxies[0]
            one.run("hello")
            one_latency = [_timed(one) for _ in range(ONE_MODEL_CALLS)]
            one_rate = threaded_rate(lambda: one.run("hello"), threads, duration)

            for proxy in proxies:  # every model loaded once: its measured size is known
                proxy.run("hello")
            # In order, each call's model is the least recently called: evicted, it reloads.
            reloads = [_timed(proxy) for _ in range(RELOAD_CYCLES) for proxy in proxies]

            failures: list[BaseException] = []
            hot_count = max(1, round(len(proxies) * HOT_SHARE))
            hot, cold = proxies[:hot_count], proxies[hot_count:] or proxies

            def skewed() -> Any:
                return random.choice(hot if random.random() < HOT_CALLS else cold)

            def uniform() -> Any:
                return random.choice(proxies)

            rates = {
                name: threaded_rate(_calling(pick, failures), threads, duration)
                for name, pick in (("skewed", skewed), ("uniform", uniform))
            }
            bookings = _bookings(client)
        finally:
            for proxy in proxies:
                proxy.close()
        return {
            "models": len(proxies),
            "model_mb": plan.pressure_model_mb,
            "memory_limit": plan.pressure_memory_limit,
            "memory_fraction": round(fraction, 3),
            "pressure": len(proxies) * self.model_bytes / self.capacity,
            "hot_models": hot_count,
            "resident_models": sum(len(booked) for booked in bookings.values()),
            "max_booked_mb_per_worker": max(
                (sum(b["bytes"] for b in booked.values()) / 1e6 for booked in bookings.values()),
                default=0.0,
            ),
            "model_memory_mb_per_worker": self.capacity / WORKERS / 1e6,
            "caller_threads": threads,
            "one_model_calls_per_s": one_rate,
            "one_model_call_p50_ms": statistics.median(one_latency) * 1e3,
            "skewed_calls_per_s": rates["skewed"],
            "uniform_calls_per_s": rates["uniform"],
            "reloads": len(reloads),
            "reload_p50_ms": percentile(reloads, 50) * 1e3,
            "reload_p99_ms": percentile(reloads, 99) * 1e3,
            "failed_calls": len(failures),
        }


def _memory_fraction(client: Any, model_memory: float) -> float:
    """The ``memory_fraction`` that leaves each worker ``model_memory`` for models: it is a
    fraction of Dask's pause threshold that the worker's whole process memory (its own
    included, measured here after importing the models' library) may reach."""
    import time

    import dask

    def measured(dask_scheduler: Any) -> list:
        return [
            (w.memory.process, w.last_seen, w.memory_limit) for w in dask_scheduler.workers.values()
        ]

    after = time.time() + 0.5
    deadline = time.monotonic() + 30
    while True:
        workers = client.run_on_scheduler(measured)
        if all(seen > after for _, seen, _ in workers) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    own = max(process for process, _, _ in workers)
    limit = min(limit for _, _, limit in workers)
    pause = float(dask.config.get("distributed.worker.memory.pause") or 1.0)
    return min(1.0, (own + model_memory) / (pause * limit))


def _timed(proxy: Any) -> float:
    started = time.perf_counter()
    proxy.run("hello")
    return time.perf_counter() - started


def _calling(pick, failures: list[BaseException]):
    """A call of a model ``pick`` chooses; a failed call is counted, not raised."""
    lock = threading.Lock()

    def call() -> None:
        try:
            pick().run("hello")
        except Exception as err:  # noqa: BLE001 - counted and reported
            with lock:
                failures.append(err)

    return call


def _bookings(client: Any) -> dict:
    from caikit_dask.loading.scheduler.books import MEMORY

    return client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.task_metadata.get(MEMORY) or {}
    )
