"""Where a proxy call's time goes, layer by layer, against a plain Dask actor.

``python -m benchmarks.fastpath [--smoke] [--json PATH]`` measures, in one run:
sequential latency of each layer of the call path (proxy -> ReplicaSet ->
ActorChannel -> ModelActor.run_batch) next to a plain Dask actor's sync and
async methods; CPU per call in the client and the worker process (work versus
waiting); and 16-thread throughput with the calls carried per actor message,
which is what coalescing buys.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from typing import Any

from .stats import interleaved_latency, interleaved_rates, pipelined_rate, threaded_rate


def _cpu_per_call(
    pids: dict[str, int], variants: dict[str, Any], rounds: int, per_round: int
) -> dict[str, dict[str, float]]:
    """CPU microseconds per call in each process (user + system), variants interleaved."""
    import psutil

    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    totals = {v: dict.fromkeys([*procs, "wall"], 0.0) for v in variants}

    def cpu() -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}

    for _ in range(rounds):
        for variant, call in variants.items():
            before, started = cpu(), time.perf_counter()
            for _ in range(per_round):
                call()
            wall, after = time.perf_counter() - started, cpu()
            totals[variant]["wall"] += wall
            for name in procs:
                totals[variant][name] += after[name] - before[name]
    n = rounds * per_round
    return {
        variant: {
            **{f"{name}_cpu_us": t[name] / n * 1e6 for name in procs},
            "wall_us": t["wall"] / n * 1e6,
        }
        for variant, t in totals.items()
    }


def _per_message(channel: Any, measure: Any) -> Any:
    """Wrap a throughput measure so it also records calls per actor message."""
    counts: list[tuple[float, int]] = []

    def run() -> float:
        before, started = channel.messages, time.perf_counter()
        rate = measure()
        counts.append((rate * (time.perf_counter() - started), channel.messages - before))
        return rate

    return run, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fastpath", description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    from .run import _worker_environment, log

    _worker_environment()
    from caikit.core.modules import ModuleConfig
    from distributed import Client, LocalCluster

    import caikit_dask
    from caikit_dask.connection import DaskConnection
    from caikit_dask.loading.calls import call
    from caikit_dask.loading.requests import encode_request

    from .baselines import RawEcho
    from .modules import BenchEcho

    rounds, per_round = (3, 30) if args.smoke else (15, 100)
    duration, repeats = (0.3, 1) if args.smoke else (2.0, 3)
    cpu_rounds = 1 if args.smoke else 10
    results: dict[str, Any] = {}
    workdir = tempfile.mkdtemp(prefix="caikit-dask-fastpath-")
    echo_path = os.path.join(workdir, "echo")
    BenchEcho.train().save(echo_path)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = Client(cluster.scheduler_address, direct_to_workers=True, set_as_default=False)
    try:
        client.run(importlib.import_module, "benchmarks.modules")
        init = caikit_dask.DaskModelInitializer(
            {"connection": {"address": cluster.scheduler_address}, "replicas": 1}, "fastpath"
        )
        proxy = init.init(ModuleConfig.load(echo_path))
        replicas = proxy._replicas
        replica = replicas.replicas[0]
        channel, worker = replica.channel, replica.worker
        with client.as_current():
            raw_future = client.submit(RawEcho, actor=True, workers=[worker], pure=False)
            raw = raw_future.result()
        request = encode_request("run", ("hello",), {}, None)
        log("latency by layer ...")
        results["latency"] = interleaved_latency(
            {
                "proxy.run": lambda: proxy.run("hello"),
                "calls.call (pickled request)": lambda: call(replicas, "run", request),
                "ActorChannel.submit": lambda: channel.submit(request).result(60),
                "raw actor, sync method": lambda: raw.ping(1).result(),
                "raw actor, async method": lambda: raw.aping(1).result(),
            },
            rounds,
            per_round,
        )
        log("cpu per call ...")
        pids = {"client": os.getpid(), "worker": client.run(os.getpid, workers=[worker])[worker]}
        results["cpu"] = _cpu_per_call(
            pids,
            {
                "proxy.run": lambda: proxy.run("hello"),
                "raw actor, sync method": lambda: raw.ping(1).result(),
            },
            cpu_rounds,
            200,
        )
        log("throughput ...")
        proxy_16, proxy_counts = _per_message(
            channel, lambda: threaded_rate(lambda: proxy.run("hello"), 16, duration)
        )
        proxy_64, proxy_64_counts = _per_message(
            channel, lambda: threaded_rate(lambda: proxy.run("hello"), 64, duration)
        )
        results["throughput"] = interleaved_rates(
            {
                "raw actor, pipelined (200 outstanding)": lambda: pipelined_rate(
                    lambda i: raw.ping(i), lambda fs: [f.result() for f in fs], 200, duration
                ),
                "raw actor, 16 threads": lambda: threaded_rate(
                    lambda: raw.ping(1).result(), 16, duration
                ),
                "proxy.run, 16 threads": proxy_16,
                "proxy.run, 64 threads": proxy_64,
            },
            repeats,
        )
        results["calls_per_message"] = {
            name: sum(c for c, _ in counts) / max(sum(m for _, m in counts), 1)
            for name, counts in (("16 threads", proxy_counts), ("64 threads", proxy_64_counts))
        }
        proxy.close()
        raw_future.release()
    finally:
        DaskConnection.close_all()
        client.close()
        cluster.close()
    print(format_report(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


def format_report(results: dict) -> str:
    out = ["== latency by layer (sequential, interleaved) =="]
    lat = results["latency"]
    base = lat["raw actor, sync method"]["p50_us"]
    out.append(f"{'layer':42s} {'p50 us':>8s} {'p99 us':>8s} {'vs raw':>7s}")
    for name, row in lat.items():
        out.append(
            f"{name:42s} {row['p50_us']:8.0f} {row['p99_us']:8.0f} {row['p50_us'] / base:6.2f}x"
        )
    out.append("")
    out.append("== CPU per call (user+sys, us) ==")
    out.append(f"{'path':42s} {'client':>8s} {'worker':>8s} {'wall':>8s}")
    for name, row in results["cpu"].items():
        out.append(
            f"{name:42s} {row['client_cpu_us']:8.0f} {row['worker_cpu_us']:8.0f} "
            f"{row['wall_us']:8.0f}"
        )
    out.append("")
    out.append("== throughput (median of rounds) ==")
    thr = results["throughput"]
    pipelined = thr["raw actor, pipelined (200 outstanding)"]["calls_per_s"]
    for name, row in thr.items():
        rate = row["calls_per_s"]
        out.append(f"{name:42s} {rate:8.0f} calls/s {rate / pipelined:6.2f}x raw pipelined")
    per_message = ", ".join(f"{v:.1f} ({k})" for k, v in results["calls_per_message"].items())
    out.append(f"proxy calls per actor message: {per_message}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
