"""The targets the benchmarks are judged by: each met, not met, or n/a when unmeasured.

Each target names the values it reads from the results, the test it applies
and how to describe what was measured; a target whose values are missing
(section not run, failed, no Ray) is n/a rather than a failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .results import is_number, lookup

PROXY_P50 = ("latency", "variants", "proxy", "p50_us")
RAW_P50 = ("latency", "variants", "raw_dask_direct", "p50_us")
RAY_P50 = ("ray", "latency", "p50_us")
PROXY_RATE = ("throughput", "variants", "proxy_threads", "calls_per_s")
PIPELINED_RATE = ("throughput", "variants", "raw_dask_pipelined", "calls_per_s")
FLOOR_P50 = ("latency", "variants", "floor", "p50_us")
PROXY_RATE_2 = ("throughput", "variants", "proxy_threads_2_replicas", "calls_per_s")
PROXY_OFF_RATE = ("throughput", "variants", "proxy_off_threads", "calls_per_s")
RUNTIME = {
    (where, protocol): (
        ("runtime", "latency", f"{where}_{protocol}", "p50_us"),
        ("runtime", "throughput", f"{where}_{protocol}_threads", "calls_per_s"),
    )
    for where in ("local", "dask")
    for protocol in ("grpc", "http")
}
SCALING_RATIO = ("scaling", "ratio")
TRAIN_P50 = ("training", "train_returns", "p50_ms")
WAIT_P50 = ("training", "wait_after_end", "p50_ms")
DASK_GROWTH = ("memory", "dask", "growth_mb")
LIST_S = ("scale", "list", "list_s")
LISTED = ("scale", "list", "listed")
FIND_AFTER_LIST_S = ("scale", "list", "get_model_future_all_s")
MAP_RATE = ("batch", "variants", "proxy_map", "calls_per_s")
RUN_LOOP_RATE = ("batch", "variants", "proxy_run_threads", "calls_per_s")
MANY_LOAD = ("many_models", "load_all_s")
MANY_THREADS = ("many_models", "max_threads_many")
PRESSURE_FAILED = ("memory_pressure", "failed_calls")
PRESSURE_RATIO = ("memory_pressure", "pressure")
STEP_FAILED = ("step_load", "failed")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    inputs: tuple[tuple[str, ...], ...]  # paths into the results, passed in order to met / detail
    met: Callable[..., bool]
    detail: Callable[..., str]
    unmeasured: str = "missing"

    def judge(self, results: dict) -> dict:
        values = [lookup(results, *path) for path in self.inputs]
        if not all(is_number(value) for value in values):
            return {"target": self.name, "met": None, "detail": self.unmeasured}
        return {"target": self.name, "met": self.met(*values), "detail": self.detail(*values)}


TARGETS = (
    Target(
        "proxy p50 <= Ray actor p50",
        (PROXY_P50, RAY_P50),
        lambda proxy, ray: proxy <= ray,
        lambda proxy, ray: f"{proxy:.0f} us vs {ray:.0f} us",
        unmeasured="no Ray",
    ),
    Target(
        "proxy p50 <= 1.05x raw Dask actor p50",
        (PROXY_P50, RAW_P50),
        lambda proxy, raw: proxy <= 1.05 * raw,
        lambda proxy, raw: f"{proxy / raw:.2f}x ({proxy:.0f} vs {raw:.0f} us)",
    ),
    Target(
        "16-thread throughput >= 4x raw Dask actor pipelined",
        (PROXY_RATE, PIPELINED_RATE),
        lambda proxy, raw: proxy >= 4 * raw,
        lambda proxy, raw: f"{proxy / raw:.2f}x ({proxy:.0f} vs {raw:.0f} calls/s)",
    ),
    Target(
        "proxy p50 <= 3x the floor (direct calls)",
        (PROXY_P50, FLOOR_P50),
        lambda proxy, floor: proxy <= 3 * floor,
        lambda proxy, floor: f"{proxy / floor:.2f}x ({proxy:.0f} vs {floor:.0f} us)",
    ),
    Target(
        "proxy p50 <= 0.4x raw Dask actor p50 (direct calls)",
        (PROXY_P50, RAW_P50),
        lambda proxy, raw: proxy <= 0.4 * raw,
        lambda proxy, raw: f"{proxy / raw:.2f}x ({proxy:.0f} vs {raw:.0f} us)",
    ),
    Target(
        "16-thread throughput >= 2x direct_calls: off (1 replica)",
        (PROXY_RATE, PROXY_OFF_RATE),
        lambda proxy, off: proxy >= 2 * off,
        lambda proxy, off: f"{proxy / off:.2f}x ({proxy:.0f} vs {off:.0f} calls/s)",
    ),
    Target(
        "16-thread throughput with 2 replicas >= 1 replica's",
        (PROXY_RATE_2, PROXY_RATE),
        lambda two, one: two >= one,
        lambda two, one: f"{two / one:.2f}x ({two:.0f} vs {one:.0f} calls/s)",
    ),
    *(
        Target(
            f"caikit.runtime over {protocol}: DASK p50 <= 1.2x LOCAL",
            (RUNTIME["dask", protocol][0], RUNTIME["local", protocol][0]),
            lambda dask, local: dask <= 1.2 * local,
            lambda dask, local: f"{dask / local:.2f}x ({dask:.0f} vs {local:.0f} us)",
        )
        for protocol in ("grpc", "http")
    ),
    *(
        Target(
            f"caikit.runtime over {protocol}: DASK calls/s >= LOCAL (16 clients)",
            (RUNTIME["dask", protocol][1], RUNTIME["local", protocol][1]),
            lambda dask, local: dask >= local,
            lambda dask, local: f"{dask / local:.2f}x ({dask:.0f} vs {local:.0f} calls/s)",
        )
        for protocol in ("grpc", "http")
    ),
    Target(
        "2 replicas >= 1.8x one (CPU-bound)",
        (SCALING_RATIO,),
        lambda ratio: ratio >= 1.8,
        lambda ratio: f"{ratio:.3f}x",
    ),
    Target(
        "train() returns < 20 ms (p50)",
        (TRAIN_P50,),
        lambda ms: ms < 20,
        lambda ms: f"{ms:.1f} ms",
    ),
    Target(
        "wait() returns < 50 ms after the task ends (p50)",
        (WAIT_P50,),
        lambda ms: ms < 50,
        lambda ms: f"{ms:.1f} ms",
    ),
    Target(
        "client RSS growth < 10 MB loading a big model (DASK)",
        (DASK_GROWTH,),
        lambda mb: mb < 10,
        lambda mb: f"{mb:.1f} MB",
    ),
    Target(
        "list_trainings() from a new client < 1 s (1,000 trainings)",
        (LIST_S, LISTED),
        lambda seconds, listed: seconds < 1,
        lambda seconds, listed: f"{seconds:.3f} s for {listed:.0f}",
    ),
    Target(
        "get_model_future on each listed < 1 s in total (1,000)",
        (FIND_AFTER_LIST_S, LISTED),
        lambda seconds, listed: seconds < 1,
        lambda seconds, listed: f"{seconds:.3f} s for {listed:.0f}",
    ),
    Target(
        "proxy.map >= 1.5x a 16-thread proxy.run loop (batch)",
        (MAP_RATE, RUN_LOOP_RATE),
        lambda mapped, looped: mapped >= 1.5 * looped,
        lambda mapped, looped: f"{mapped / looped:.2f}x ({mapped:.0f} vs {looped:.0f} calls/s)",
    ),
    Target(
        "many models: all load < 60 s",
        (MANY_LOAD,),
        lambda s: s < 60,
        lambda s: f"{s:.1f} s",
    ),
    Target(
        "many models: < 100 threads per worker",
        (MANY_THREADS,),
        lambda threads: threads < 100,
        lambda threads: f"{threads:.0f} threads",
    ),
    Target(
        "memory pressure: every call answered (3x model memory, lru)",
        (PRESSURE_FAILED, PRESSURE_RATIO),
        lambda failed, pressure: failed == 0 and pressure >= 3,
        lambda failed, pressure: f"{failed:.0f} failed calls at {pressure:.1f}x",
    ),
    Target(
        "step load 1 -> 16 -> 1 threads, autoscaling: no failed call",
        (STEP_FAILED,),
        lambda failed: failed == 0,
        lambda failed: f"{failed:.0f} failed",
    ),
)


def judge_targets(results: dict) -> list[dict]:
    """The ``targets`` entry of the results: each target with the numbers it was judged on."""
    return [target.judge(results) for target in TARGETS]


def unmet(judged: list[dict]) -> bool:
    """Whether any measured target was not met (what ``--strict`` fails on)."""
    return any(target["met"] is False for target in judged)
