"""Where a proxy call's time goes, layer by layer, against the floor and a plain Dask actor.

``python -m benchmarks.fastpath [--smoke] [--json PATH]`` measures, in one run:
sequential latency of each layer of the direct call path (proxy -> calls.call ->
DirectChannel -> the bare frame on its connection), of the actor RPC's channel
(ActorChannel -> ModelActor.run_batch, ``direct_calls: off``), the physical floor (two
processes, a blocking loopback socket, a pickle each way) and a plain Dask actor's sync
and async methods; CPU per call in the client and the worker process (work versus
waiting); and 16-thread throughput with the calls carried per read (direct) or per actor
message (off), which is what sharing buys.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

from .environment import log, prepare_worker_environment
from .formatting import number, ratio, table
from .session import BenchSession
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
    prepare_worker_environment()
    rounds, per_round = (3, 30) if args.smoke else (15, 100)
    duration, repeats = (0.3, 1) if args.smoke else (2.0, 3)
    cpu_rounds = 1 if args.smoke else 10
    with tempfile.TemporaryDirectory(prefix="caikit-dask-fastpath-") as workdir:
        session = BenchSession(workdir)
        try:
            results = _measure(session, rounds, per_round, duration, repeats, cpu_rounds)
        finally:
            session.close()
    print(format_report(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


def _measure(
    session: BenchSession,
    rounds: int,
    per_round: int,
    duration: float,
    repeats: int,
    cpu_rounds: int,
) -> dict[str, Any]:
    from caikit_dask.loading.calls.retrying import call
    from caikit_dask.loading.proxy import replica_set_of
    from caikit_dask.loading.wire import framing
    from caikit_dask.loading.wire.direct_channel import DirectChannel
    from caikit_dask.loading.wire.protocol import encode_request

    from .floor import Floor
    from .modules import BenchEcho

    echo_path = str(session.workdir / "echo")
    BenchEcho.train().save(echo_path)
    session.start_cluster()
    proxy = session.load(echo_path, replicas=1)
    replicas = replica_set_of(proxy)
    replica = replicas.replicas[0]
    channel, worker = replica.channel, replica.worker
    raw = session.raw_actor(True, worker)
    request = encode_request("run", ("hello",), {}, None)
    proxy_off = session.load(echo_path, replicas=1, direct_calls="off")
    off_replicas = replica_set_of(proxy_off)
    actor_channel = off_replicas.replicas[0].channel
    floor = Floor()
    layers: dict[str, Any] = {
        "proxy.run": lambda: proxy.run("hello"),
        "calls.call (pickled request)": lambda: call(replicas, "run", request),
    }
    if isinstance(channel, DirectChannel):
        proxy.run("hello")  # its connection is open
        connection = channel._connection
        layers["DirectChannel.submit"] = lambda: channel.submit(request).result(60)
        layers["bare frame on the connection"] = lambda: connection.request(
            framing.RUN, channel.token, request
        ).result(60)
    layers.update(
        {
            "proxy.run, direct_calls: off": lambda: proxy_off.run("hello"),
            "ActorChannel.submit (off)": lambda: actor_channel.submit(request).result(60),
            "floor (2 processes, socket, pickle)": floor.call,
            "raw actor, sync method": lambda: raw.ping(1).result(),
            "raw actor, async method": lambda: raw.aping(1).result(),
        }
    )
    results: dict[str, Any] = {}
    log("latency by layer ...")
    results["latency"] = interleaved_latency(layers, rounds, per_round)
    log("cpu per call ...")
    worker_pid = session.clients[True].run(os.getpid, workers=[worker])[worker]
    results["cpu"] = _cpu_per_call(
        {"client": os.getpid(), "worker": worker_pid},
        {
            "proxy.run": lambda: proxy.run("hello"),
            "proxy.run, direct_calls: off": lambda: proxy_off.run("hello"),
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
            "proxy.run, direct_calls: off, 16 threads": lambda: threaded_rate(
                lambda: proxy_off.run("hello"), 16, duration
            ),
        },
        repeats,
    )
    results["calls_per_message"] = {
        name: sum(c for c, _ in counts) / max(sum(m for _, m in counts), 1)
        for name, counts in (("16 threads", proxy_counts), ("64 threads", proxy_64_counts))
    }
    proxy.close()
    proxy_off.close()
    floor.close()
    return results


def format_report(results: dict) -> str:
    latency = results["latency"]
    raw_p50 = latency["raw actor, sync method"]["p50_us"]
    out = table(
        "latency by layer (sequential, interleaved)",
        ["layer", "p50 us", "p99 us", "vs raw"],
        [
            [name, number(row["p50_us"]), number(row["p99_us"]), ratio(row["p50_us"], raw_p50)]
            for name, row in latency.items()
        ],
    )
    out += table(
        "CPU per call (user+sys, us)",
        ["path", "client", "worker", "wall"],
        [
            [
                name,
                number(row["client_cpu_us"]),
                number(row["worker_cpu_us"]),
                number(row["wall_us"]),
            ]
            for name, row in results["cpu"].items()
        ],
    )
    throughput = results["throughput"]
    pipelined = throughput["raw actor, pipelined (200 outstanding)"]["calls_per_s"]
    out += table(
        "throughput (median of rounds)",
        ["variant", "calls/s", "vs raw pipelined"],
        [
            [name, number(row["calls_per_s"]), ratio(row["calls_per_s"], pipelined)]
            for name, row in throughput.items()
        ],
    )
    per_message = ", ".join(
        f"{number(v, '.1f')} ({k})" for k, v in results["calls_per_message"].items()
    )
    out.append(f"proxy calls per read (direct) or actor message (off): {per_message}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
