"""Benchmark 3: does a CPU-bound model scale from 1 to 2 replicas?

``BenchSpin`` holds the GIL for ~10 ms per call; its rounds are calibrated
before the cluster starts, on a quiet machine, and its own compute time is
measured in this process and on the workers so the calls/s can be read
against the ideal ``n x 1 / work``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from .session import Benchmark
from .stats import threaded_rate, timed


class ScalingBenchmark(Benchmark):
    sections = ("scaling",)

    def prepare(self) -> None:
        from .modules import BenchSpin, spin

        self.spin_rounds = _calibrate(spin, target_s=0.010)
        self.spin_local_ms = min(timed(lambda: spin(self.spin_rounds)) for _ in range(5)) * 1e3
        self.spin_path = str(self.session.workdir / "spin")
        BenchSpin.train(rounds=self.spin_rounds).save(self.spin_path)

    def scaling(self) -> dict:
        """1 vs 2 replicas, measured in alternating rounds; the ratio is the median of rounds.

        Both proxies stay loaded (idle actors cost nothing) so each round
        compares the two under the same conditions on a machine that may be busy.
        """
        plan, session, path = self.plan, self.session, self.spin_path
        on_workers = session.clients[True].run(_spin_ms, self.spin_rounds)
        proxies = {1: session.load(path, replicas=1), 2: session.load(path, replicas=2)}
        rates: dict[int, list[float]] = {1: [], 2: []}
        try:
            sequential = {
                n: statistics.median(timed(lambda p=p: p.run("x")) for _ in range(5))
                for n, p in proxies.items()
            }
            for _ in range(plan.scaling_repeats):
                for n, proxy in proxies.items():
                    rates[n].append(
                        threaded_rate(
                            lambda p=proxy: p.run("x"), plan.scaling_threads, plan.scaling_duration
                        )
                    )
            workers = {n: sorted({r["worker"] for r in p.replicas}) for n, p in proxies.items()}
        finally:
            for proxy in proxies.values():
                proxy.close()
        result: dict[str, Any] = {
            "rounds": self.spin_rounds,
            "local_call_ms": self.spin_local_ms,
            "worker_call_ms": statistics.median(on_workers.values()),
            "threads": plan.scaling_threads,
            "ratio": statistics.median(b / a for a, b in zip(rates[1], rates[2], strict=True)),
        }
        for n in (1, 2):
            result[f"replicas_{n}"] = {
                "calls_per_s": statistics.median(rates[n]),
                "rounds": rates[n],
                "workers": workers[n],
                "sequential_call_ms": sequential[n] * 1e3,
            }
        return result


def _spin_ms(rounds: int) -> float:
    """Run on a worker: the model's own compute time for one call there, in ms."""
    from .modules import spin

    return min(timed(lambda: spin(rounds)) for _ in range(5)) * 1e3


def _calibrate(spin: Callable[[int], int], target_s: float) -> int:
    """Rounds of ``spin`` that take ``target_s`` here (same CPU as the workers)."""
    probe = 2000
    spin(probe)
    per_round = min(timed(lambda: spin(probe)) for _ in range(5)) / probe
    return max(1, round(target_s / per_round))
