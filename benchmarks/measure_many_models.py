"""Benchmark 7: many tiny models on the two workers.

Loads ``plan.many_models`` ``BenchEcho`` models (8 at a time, as caikit.runtime's
loader pool does), then calls them round-robin from many threads. Each figure
sits next to the same figure for one model in the same run: one model's load
time, the same threads calling one model, the workers' threads and RSS with one
model loaded.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .session import Benchmark
from .stats import threaded_rate

LOADERS = 8
SINGLE_LOADS = 5


class ManyModelsBenchmark(Benchmark):
    sections = ("many_models",)

    def prepare(self) -> None:
        from .modules import BenchEcho

        model = BenchEcho.train()
        root = self.session.workdir / "many"
        self.paths = [str(root / f"echo-{i}") for i in range(self.plan.many_models)]
        for path in self.paths:
            model.save(path)

    def many_models(self) -> dict:
        from caikit.core.modules import ModuleConfig

        from caikit_dask import DaskModelInitializer

        plan, client = self.plan, self.session.clients[True]
        initializer = DaskModelInitializer(
            {"connection": {"address": self.session.address}}, "bench-many"
        )

        def load(path: str) -> Any:
            return initializer.init(ModuleConfig.load(path))

        single_loads = []
        for path in self.paths[:SINGLE_LOADS]:
            started = time.perf_counter()
            load(path).close()
            single_loads.append(time.perf_counter() - started)
        one = load(self.paths[0])
        one_rate = threaded_rate(lambda: one.run("hello"), plan.caller_threads, plan.many_duration)
        one_workers = _workers(client)
        one.close()

        started = time.perf_counter()
        with ThreadPoolExecutor(LOADERS) as loaders:
            proxies = list(loaders.map(load, self.paths))
        loaded_s = time.perf_counter() - started
        try:
            answered = sum(proxy.run("hello").value == 5 for proxy in proxies)
            turn = iter(range(1 << 62))
            many_rate = threaded_rate(
                lambda: proxies[next(turn) % len(proxies)].run("hello"),
                plan.caller_threads,
                plan.many_duration,
            )
            many_workers = _workers(client)
        finally:
            for proxy in proxies:
                proxy.close()
        return {
            "models": len(proxies),
            "answered": answered,
            "loaders": LOADERS,
            "load_all_s": loaded_s,
            "load_per_model_ms": loaded_s / len(proxies) * 1e3,
            "one_model_load_ms": statistics.median(single_loads) * 1e3,
            "caller_threads": plan.caller_threads,
            "one_model_calls_per_s": one_rate,
            "round_robin_calls_per_s": many_rate,
            "workers_one_model": one_workers,
            "workers_many_models": many_workers,
            **{
                f"max_{figure}_{name}": max(w[figure] for w in workers.values())
                for name, workers in (("one", one_workers), ("many", many_workers))
                for figure in ("threads", "pool_threads", "rss_mb")
            },
        }


def _workers(client: Any) -> dict[str, dict]:
    """Each worker's OS threads, model pool threads and RSS (MB)."""

    def measure() -> dict:
        import psutil

        pool = sum(t.name.startswith("caikit-dask-model") for t in threading.enumerate())
        process = psutil.Process()
        return {
            "threads": process.num_threads(),
            "pool_threads": pool,
            "rss_mb": process.memory_info().rss / 2**20,
        }

    return client.run(measure)
