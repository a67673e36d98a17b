"""Benchmarks 1 and 2: a trivial call's latency and throughput through the proxy.

Both compare ``BenchEcho.run`` through a ``DaskModelInitializer`` proxy (the direct
call path, ``direct_calls: auto``) with the same run's baselines: the same proxy on
Dask's actor RPC (``direct_calls: off``), the physical floor (two processes, a
blocking loopback socket, a small pickle each way: ``floor``), an in-process call, a
plain Dask actor on the same worker (``direct_to_workers`` on and off, sync and
``async`` method) and, when wanted, a Ray actor and a Ray Serve deployment measured
in their own process before the cluster starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .environment import run_module_json
from .session import Benchmark
from .stats import interleaved_latency, interleaved_rates, pipelined_rate, threaded_rate


class CallBenchmarks(Benchmark):
    """Latency then throughput; they share the loaded proxy and the raw actors."""

    sections = ("latency", "throughput")

    proxy: Any = None
    proxy_off: Any = None
    floor: Any = None

    def prepare(self) -> None:
        from .modules import BenchEcho

        self.echo_path = str(self.session.workdir / "echo")
        BenchEcho.train().save(self.echo_path)

    def ray(self) -> dict:
        """The Ray actor baseline, in its own process (run it before the cluster starts)."""
        plan = self.plan
        if not plan.ray:
            why = (
                "in --smoke mode (use --ray to include it)"
                if plan.name == "smoke"
                else "(--no-ray)"
            )
            return {"skipped": f"not run {why}"}
        return run_module_json(
            [
                "benchmarks.ray_baseline",
                f"--rounds={plan.latency_rounds}",
                f"--per-round={plan.latency_per_round}",
                f"--duration={plan.throughput_duration}",
                f"--repeats={plan.throughput_repeats}",
                f"--threads={plan.caller_threads}",
            ],
            timeout=240,
        )

    def latency(self) -> dict:
        """Sequential latency of each variant, interleaved round by round."""
        from .modules import BenchEcho

        session = self.session
        from .floor import Floor

        self.proxy = session.load(self.echo_path, replicas=1)
        self.proxy_off = session.load(self.echo_path, replicas=1, direct_calls="off")
        self.floor = Floor()
        worker = self.proxy.replicas[0]["worker"]
        self.raw_direct = session.raw_actor(True, worker)
        self.raw_scheduler = session.raw_actor(False, worker)
        local = BenchEcho.load(self.echo_path)
        proxy, direct, via_scheduler = self.proxy, self.raw_direct, self.raw_scheduler
        proxy_off, floor = self.proxy_off, self.floor
        variants: dict[str, Callable[[], object]] = {
            "proxy": lambda: proxy.run("hello"),
            "proxy_direct_calls_off": lambda: proxy_off.run("hello"),
            "floor": floor.call,
            "local": lambda: local.run("hello"),
            "raw_dask_direct": lambda: direct.ping(1).result(),
            "raw_dask_scheduler": lambda: via_scheduler.ping(1).result(),
            "raw_dask_direct_async": lambda: direct.aping(1).result(),
        }
        result = interleaved_latency(
            variants, self.plan.latency_rounds, self.plan.latency_per_round
        )
        return {
            "worker": worker,
            "worker_off": self.proxy_off.replicas[0]["worker"],
            "variants": result,
        }

    def throughput(self) -> dict:
        """Calls/s from many caller threads, pipelined for the raw actor; uses latency's proxy."""
        plan = self.plan
        threads, duration = plan.caller_threads, plan.throughput_duration
        proxy, direct, proxy_off = self.proxy, self.raw_direct, self.proxy_off
        proxy2 = self.session.load(self.echo_path, replicas=2)
        proxy2_off = self.session.load(self.echo_path, replicas=2, direct_calls="off")
        try:
            measures = {
                "proxy_threads": lambda: threaded_rate(
                    lambda: proxy.run("hello"), threads, duration
                ),
                "proxy_threads_2_replicas": lambda: threaded_rate(
                    lambda: proxy2.run("hello"), threads, duration
                ),
                "proxy_off_threads": lambda: threaded_rate(
                    lambda: proxy_off.run("hello"), threads, duration
                ),
                "proxy_off_threads_2_replicas": lambda: threaded_rate(
                    lambda: proxy2_off.run("hello"), threads, duration
                ),
                "raw_dask_pipelined": lambda: pipelined_rate(
                    lambda i: direct.ping(i), lambda fs: [f.result() for f in fs], 200, duration
                ),
                "raw_dask_threads": lambda: threaded_rate(
                    lambda: direct.ping(1).result(), threads, duration
                ),
            }
            rates = interleaved_rates(measures, plan.throughput_repeats)
        finally:
            proxy2.close()
            proxy2_off.close()
        return {"threads": threads, "duration_s": duration, "variants": rates}

    def close(self) -> None:
        """The echo proxy is not needed by later benchmarks."""
        for proxy in (self.proxy, self.proxy_off):
            if proxy is not None:
                proxy.close()
        if self.floor is not None:
            self.floor.close()
