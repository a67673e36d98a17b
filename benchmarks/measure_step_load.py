"""Benchmark 10: autoscaling under a step load, 1 -> 16 -> 1 caller threads, on an
adaptive LocalCluster.

One ``BenchSpin`` model (~10 ms of GIL-holding work per call) with
``autoscaling`` and short delays, so a run sees it grow and shrink. The model
takes one ``MODEL`` resource and each worker offers one, so every replica needs
a worker of its own: the cluster (``adapt`` 1..4 workers) grows as replicas ask
for room and shrinks once they leave. Per phase: calls/s, p99 and failed calls
(the goal is none); over the whole run, the replica and worker counts each time
they changed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .measure_scaling import _calibrate
from .session import Benchmark
from .stats import percentile

AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 4,
    "target_ongoing_requests": 2,
    "upscale_delay": "0.5s",
    "downscale_delay": "1s",
}
ADAPT = {"minimum": 1, "maximum": 4, "interval": "200ms", "wait_count": 3}
CLUSTER = {
    "class": "distributed.LocalCluster",
    "kwargs": {
        "n_workers": 1,
        "threads_per_worker": 1,
        "processes": True,
        "resources": {"MODEL": 1},
        "host": "127.0.0.1",
        "dashboard_address": None,
    },
    "adapt": ADAPT,
}
STEPS = (1, 16, 1)  # caller threads per phase
SAMPLE_S = 0.05


class StepLoadBenchmark(Benchmark):
    sections = ("step_load",)

    def prepare(self) -> None:
        from .modules import BenchSpin, spin

        self.path = str(self.session.workdir / "step-spin")
        BenchSpin.train(rounds=_calibrate(spin, target_s=0.010)).save(self.path)

    def step_load(self) -> dict:
        from caikit.core.modules import ModuleConfig

        from caikit_dask import DaskModelInitializer
        from caikit_dask.connection import DaskConnection

        connection = {"cluster": CLUSTER}
        initializer = DaskModelInitializer(
            {
                "connection": connection,
                "resources": {"MODEL": 1},
                "autoscaling": AUTOSCALING,
            },
            "bench-step",
        )
        try:
            proxy = initializer.init(ModuleConfig.load(self.path))
            timeline = _Timeline(proxy, DaskConnection.from_config(connection).client)
            try:
                phases = [
                    _phase(proxy, threads, seconds)
                    for threads, seconds in zip(STEPS, self.plan.step_phases, strict=True)
                ]
            finally:
                timeline.stop()
                proxy.close()
        finally:
            DaskConnection.from_config(connection).close()
        return {
            "autoscaling": AUTOSCALING,
            "adapt": {k: ADAPT[k] for k in ("minimum", "maximum")},
            "phases": phases,
            "timeline": timeline.changes,
            "failed": sum(phase["failed"] for phase in phases),
        }


def _resident(proxy: Any) -> int:
    return sum(replica["state"] == "resident" for replica in proxy.replicas)


def _workers(client: Any) -> int:
    from caikit_dask import cluster_state

    return len(cluster_state.workers(client))


class _Timeline:
    """The replica and worker counts, sampled in the background; kept where they changed."""

    def __init__(self, proxy: Any, client: Any):
        self.proxy, self.client, self.started = proxy, client, time.perf_counter()
        self.changes: list[tuple[float, int, int]] = [(0.0, _resident(proxy), _workers(client))]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            counts = (_resident(self.proxy), _workers(self.client))
            if counts != self.changes[-1][1:]:
                self.changes.append((round(time.perf_counter() - self.started, 2), *counts))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _phase(proxy: Any, threads: int, seconds: float) -> dict:
    """``threads`` callers for ``seconds``: their rate, p99 and failures."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []
    stop = threading.Event()

    def caller(index: int) -> None:
        own = latencies[index]
        while not stop.is_set():
            started = time.perf_counter()
            try:
                proxy.run("x")
            except Exception as err:  # noqa: BLE001 - counted, the load goes on
                failures.append(err)
                continue
            own.append(time.perf_counter() - started)

    replicas_start = _resident(proxy)
    callers = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(threads)]
    started = time.perf_counter()
    for thread in callers:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in callers:
        thread.join()
    elapsed = time.perf_counter() - started
    samples = [latency for own in latencies for latency in own]
    return {
        "threads": threads,
        "seconds": elapsed,
        "calls": len(samples),
        "calls_per_s": len(samples) / elapsed,
        "p99_ms": percentile(samples, 99) * 1e3 if samples else None,
        "failed": len(failures),
        "first_failure": repr(failures[0]) if failures else None,
        "replicas_start": replicas_start,
        "replicas_end": _resident(proxy),
    }
