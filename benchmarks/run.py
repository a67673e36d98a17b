"""Run every benchmark against one embedded LocalCluster and print a table of ratios.

Usage: ``python -m benchmarks [--smoke] [--json PATH] [--no-ray] [--only NAME...] [--strict]``.

The baselines (in-process call, plain Dask actor with and without
``direct_to_workers``, Ray actor) are measured in the same run as the proxy,
on the same machine, so the ratios are what to compare between commits; the
absolute numbers mostly describe the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from dask.utils import format_time

from .environment import log, prepare_worker_environment
from .measure_batch import BatchBenchmark
from .measure_calls import CallBenchmarks
from .measure_gang import GangBenchmark
from .measure_many_models import ManyModelsBenchmark
from .measure_memory import MemoryBenchmark
from .measure_memory_pressure import MemoryPressureBenchmark
from .measure_runtime import RuntimeBenchmark
from .measure_scale import ScaleBenchmark
from .measure_scaling import ScalingBenchmark
from .measure_step_load import StepLoadBenchmark
from .measure_training import TrainingBenchmark
from .meta import describe_run, load_average
from .plan import FULL, SMOKE, Plan
from .report import render, write_json
from .results import SECTIONS
from .session import Benchmark, BenchSession
from .stats import ForeignLoad
from .targets import judge_targets, unmet

BENCHMARKS: tuple[type[Benchmark], ...] = (
    CallBenchmarks,
    ScalingBenchmark,
    TrainingBenchmark,
    MemoryBenchmark,
    ScaleBenchmark,
    BatchBenchmark,
    ManyModelsBenchmark,
    MemoryPressureBenchmark,
    StepLoadBenchmark,
    GangBenchmark,
    RuntimeBenchmark,
)


class SectionRunner:
    """Runs sections one by one: records each result or error and the foreign load during it."""

    def __init__(self, results: dict, load: ForeignLoad):
        self.results = results
        self.load = load
        self.foreign: dict[str, float | None] = results["meta"].setdefault("foreign_cores", {})
        self.failed = False

    def run(self, name: str, measure: Callable[[], dict]) -> None:
        log(f"{name} ...")
        started, window_start = time.perf_counter(), time.monotonic()
        try:
            self.results[name] = measure()
        except Exception as err:  # noqa: BLE001 - record it, run the other benchmarks
            self.failed = True
            traceback.print_exc()
            self.results[name] = {"error": f"{type(err).__name__}: {err}"}
        self.foreign[name] = self.load.mean(window_start, time.monotonic())
        log(f"{name} done in {format_time(time.perf_counter() - started)}")
        gc.collect()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it all runs")
    parser.add_argument("--json", metavar="PATH", help="where to write the JSON results")
    ray_group = parser.add_mutually_exclusive_group()
    ray_group.add_argument("--ray", dest="ray", action="store_true", default=None)
    ray_group.add_argument("--no-ray", dest="ray", action="store_false")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, help="run only these benchmarks (for development)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is not met")
    return parser.parse_args(argv)


def sections_to_run(only: list[str] | None) -> list[str]:
    """The wanted sections in run order; throughput needs latency's proxy, so it runs too."""
    wanted = set(only or SECTIONS)
    if "throughput" in wanted:
        wanted.add("latency")
    return [name for name in SECTIONS if name in wanted]


def measure_all(
    session: BenchSession, plan: Plan, sections: list[str], runner: SectionRunner
) -> None:
    """Prepare what the wanted benchmarks need, then measure them in order."""
    benchmarks = [
        benchmark(session, plan)
        for benchmark in BENCHMARKS
        if set(benchmark.sections) & set(sections)
    ]
    for benchmark in benchmarks:
        benchmark.prepare()
    calls = next((b for b in benchmarks if isinstance(b, CallBenchmarks)), None)
    if calls is not None:  # Ray runs in its own process, before the cluster competes for cores
        runner.run("ray", calls.ray)
    session.start_cluster()
    for benchmark in benchmarks:
        for name in benchmark.sections:
            if name in sections:
                runner.run(name, lambda b=benchmark, n=name: b.measure(n))
        benchmark.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.ray is not None:
        plan = dataclasses.replace(plan, ray=args.ray)
    prepare_worker_environment()
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": describe_run(plan)}
    load = ForeignLoad().start()
    runner = SectionRunner(results, load)
    with tempfile.TemporaryDirectory(prefix="caikit-dask-bench-") as workdir:
        session = BenchSession(workdir)
        try:
            measure_all(session, plan, sections_to_run(args.only), runner)
        finally:
            session.close()
            load.stop()
    runner.foreign["whole run"] = load.mean()
    results["targets"] = judge_targets(results)
    results["meta"]["wall_s"] = time.perf_counter() - started
    results["meta"]["loadavg_end"] = load_average()
    path = write_json(results, args.json)
    print(render(results))
    print(f"\nwall time {format_time(results['meta']['wall_s'])}; JSON written to {path}")
    if runner.failed:
        return 2
    if args.strict and unmet(results["targets"]):
        return 1
    return 0
