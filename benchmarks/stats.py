"""Timing helpers shared by the benchmark sections and the Ray baseline.

Latency variants are interleaved in rounds rather than run back to back, so
that drift on a small shared machine (other processes, CPU frequency) spreads
over all of them instead of biasing whichever ran during a slow spell.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable


def timed(call: Callable[[], object]) -> float:
    """Seconds one call of ``call`` takes."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (0-100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_latency(samples: list[float]) -> dict:
    """p50/p99/mean in microseconds."""
    return {
        "n": len(samples),
        "p50_us": percentile(samples, 50) * 1e6,
        "p99_us": percentile(samples, 99) * 1e6,
        "mean_us": statistics.fmean(samples) * 1e6 if samples else float("nan"),
    }


def interleaved_latency(
    variants: dict[str, Callable[[], object]], rounds: int, per_round: int, warmup: int = 20
) -> dict[str, dict]:
    """Sequential per-call latency of each variant, interleaved round by round."""
    for call in variants.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    rng = random.Random(0)
    clock = time.perf_counter
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            call, out = variants[name], samples[name]
            for _ in range(per_round):
                start = clock()
                call()
                out.append(clock() - start)
    return {name: summarize_latency(values) for name, values in samples.items()}


def threaded_rate(call: Callable[[], object], threads: int, duration: float) -> float:
    """Calls per second with ``threads`` callers each calling in a loop for ``duration``."""
    counts = [0] * threads
    errors: list[BaseException] = []
    stop = threading.Event()
    barrier = threading.Barrier(threads + 1)

    def caller(index: int) -> None:
        barrier.wait()
        done = 0
        try:
            while not stop.is_set():
                call()
                done += 1
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
        counts[index] = done

    workers = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} caller thread(s) failed: {errors[0]!r}") from errors[0]
    return sum(counts) / elapsed


def pipelined_rate(
    submit: Callable[[int], object], collect: Callable[[list], object], window: int, duration: float
) -> float:
    """Calls per second from one thread keeping ``window`` calls outstanding at a time."""
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        futures = [submit(i) for i in range(window)]
        collect(futures)
        done += window
    return done / (time.perf_counter() - start)


def interleaved_rates(measures: dict[str, Callable[[], float]], repeats: int) -> dict[str, dict]:
    """Throughput of each variant, ``repeats`` rounds interleaved; median per variant."""
    rates: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            rates[name].append(measure())
    return {
        name: {
            "calls_per_s": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "rounds": values,
        }
        for name, values in rates.items()
    }


class ForeignLoad:
    """Samples how much CPU *other* processes use while the benchmark runs.

    On a shared machine that is what makes absolute numbers move; the
    benchmark's own process tree (cluster workers, probes, Ray) is excluded.
    """

    def __init__(self, interval: float = 0.5):
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (monotonic time, cores used by others)
        self._thread = threading.Thread(target=self._run, name="bench-load", daemon=True)

    def _busy(self) -> float:
        times = self._psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def _ours(self) -> float:
        """CPU seconds used so far by our tree: us, reaped children, and live descendants."""
        total = sum(self._me.cpu_times()[:4])  # user, system, children_user, children_system
        for proc in self._me.children(recursive=True):
            try:
                total += sum(proc.cpu_times()[:2])
            except self._psutil.Error:
                continue
        return total

    def _run(self) -> None:
        busy, ours, last = self._busy(), self._ours(), time.monotonic()
        while not self._stop.wait(self._interval):
            now_busy, now_ours, now = self._busy(), self._ours(), time.monotonic()
            others = (now_busy - busy) - (now_ours - ours)
            self.samples.append((now, max(0.0, others) / max(now - last, 1e-6)))
            busy, ours, last = now_busy, now_ours, now

    def start(self) -> ForeignLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self, start: float = float("-inf"), end: float = float("inf")) -> float | None:
        """Average cores used by other processes between two ``time.monotonic()`` stamps."""
        values = [v for t, v in self.samples if start <= t <= end]
        return statistics.fmean(values) if values else None
