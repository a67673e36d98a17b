"""Where a proxy call's time goes, and what a faster path would buy (measured prototypes).

``python -m benchmarks.fastpath [--smoke]`` peels the proxy call apart layer by
layer (proxy -> ReplicaSet -> actor handle -> worker) and measures prototypes
of fast-path changes without touching the library: an actor method that runs a
trivial call on the worker's event loop, a call that skips ``ActorFuture``'s
second hop into the client loop, and coalescing concurrent calls into one actor
message. It also counts CPU per call in the client and worker processes, to
tell work from waiting. The prototypes live here only to be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib
import json
import os
import pickle
import sys
import tempfile
import threading
import time
from typing import Any

from caikit_dask.loading.actor import ModelActor

from .stats import interleaved_latency, interleaved_rates, pipelined_rate, threaded_rate


class FastModelActor(ModelActor):
    """ModelActor plus the prototype entry points the fast path would add."""

    async def call_inline(self, method: str, args: tuple, kwargs: dict) -> Any:
        """Run on the worker's event loop: no executor hop (only for trivial methods)."""
        self.calls += 1
        return getattr(self.model, method)(*args, **kwargs)

    async def call_batch(self, calls: list) -> list:
        """Many calls in one message and one executor hop; per-call errors are returned."""
        self.calls += len(calls)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _run_all, self.model, calls)

    async def call_pickled(self, blob: bytes, inline: bool = False) -> bytes:
        """The call arrives as one pickle (msgpack passes bytes as they are) and leaves as one."""
        self.calls += 1
        method, args, kwargs = pickle.loads(blob)
        if inline:
            return pickle.dumps(getattr(self.model, method)(*args, **kwargs), protocol=5)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._executor, lambda: getattr(self.model, method)(*args, **kwargs)
        )
        return pickle.dumps(result, protocol=5)

    async def call_batch_pickled(self, blob: bytes) -> bytes:
        """``call_batch`` with the batch and its results as single pickles."""
        calls = pickle.loads(blob)
        self.calls += len(calls)
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, _run_all, self.model, calls)
        return pickle.dumps(results, protocol=5)


def _run_all(model: Any, calls: list) -> list:
    out = []
    for method, args, kwargs in calls:
        try:
            out.append((True, getattr(model, method)(*args, **kwargs)))
        except Exception as err:  # noqa: BLE001 - handed back to that caller
            out.append((False, err))
    return out


class DirectCaller:
    """One hop into the client loop per call (``ActorFuture.result`` makes a second)."""

    def __init__(self, client: Any, worker: str, key: str):
        from distributed.protocol import to_serialize

        self._serialize = to_serialize
        self._loop = client.loop.asyncio_loop
        self._rpc = client.rpc(worker)
        self._key = key

    async def _call(self, function: str, args: list, raw: bool = False) -> Any:
        response = await self._rpc.actor_execute(
            actor=self._key,
            function=function,
            args=args if raw else [self._serialize(a) for a in args],
            kwargs={},
        )
        if response["status"] != "OK":
            raise response["exception"]
        return response["result"]

    def call(self, function: str, *args: Any, timeout: float = 60) -> Any:
        coro = self._call(function, list(args))
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call_pickled(self, method: str, args: tuple, kwargs: dict, inline: bool) -> Any:
        """The whole call as one pickle: no per-argument Dask serialisation either way."""
        blob = pickle.dumps((method, args, kwargs), protocol=5)
        coro = self._call("call_pickled", [blob, inline], raw=True)
        return pickle.loads(asyncio.run_coroutine_threadsafe(coro, self._loop).result(60))


class Coalescer:
    """Callers queue their calls; at most ``depth`` batch messages are in flight.

    While a batch is on its way, new calls pile up and leave together in the
    next message, so 16 callers cost a handful of round trips, not 16.
    """

    def __init__(self, caller: DirectCaller, pickled: bool = False, depth: int = 2):
        self._caller, self._pickled, self._depth = caller, pickled, depth
        self._pending: list = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.batches = 0
        self.calls = 0

    def call(self, method: str, args: tuple, kwargs: dict, timeout: float = 60) -> Any:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._pending.append((method, args, kwargs, future))
            start = self._in_flight < self._depth
            if start:
                self._in_flight += 1
        if start:
            asyncio.run_coroutine_threadsafe(self._drain(), self._caller._loop)
        return future.result(timeout)

    async def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._in_flight -= 1
                    return
            self.batches += 1
            self.calls += len(batch)
            calls = [(m, a, k) for m, a, k, _ in batch]
            try:
                if self._pickled:
                    blob = pickle.dumps(calls, protocol=5)
                    reply = await self._caller._call("call_batch_pickled", [blob], raw=True)
                    results = pickle.loads(reply)
                else:
                    results = await self._caller._call("call_batch", [calls])
            except BaseException as err:  # noqa: BLE001 - every caller of the batch sees it
                for *_, future in batch:
                    future.set_exception(err)
                continue
            for (*_, future), (ok, value) in zip(batch, results, strict=True):
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)


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


def _serialization_cost(n: int = 2000) -> dict[str, float]:
    """In-process cost of packing one request and one response as the comm layer does."""
    from distributed.protocol import dumps, loads, to_serialize

    from .modules import BenchResult

    request = {
        "op": "actor_execute",
        "actor": "caikit-model-x-0123456789ab",
        "function": "call",
        "args": [to_serialize("run"), to_serialize(("hello",)), to_serialize({})],
        "kwargs": {},
        "reply": True,
    }
    response = {"status": "OK", "result": to_serialize(BenchResult(text="hello", value=5))}
    out = {}
    for name, message in (("request", request), ("response", response)):
        started = time.perf_counter()
        for _ in range(n):
            loads(dumps(message))
        out[f"{name}_dumps_loads_us"] = (time.perf_counter() - started) / n * 1e6
    return out


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

    from .baselines import RawEcho
    from .modules import BenchEcho

    rounds, per_round = (3, 30) if args.smoke else (15, 100)
    duration, repeats = (0.3, 1) if args.smoke else (2.0, 3)
    cpu_rounds = 1 if args.smoke else 10
    results: dict[str, Any] = {"serialization": _serialization_cost()}
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
        actor, worker = replica.actor, replica.worker
        with client.as_current():
            fast_future = client.submit(
                FastModelActor, echo_path, actor=True, workers=[worker], pure=False
            )
            fast = fast_future.result()
            raw_future = client.submit(RawEcho, actor=True, workers=[worker], pure=False)
            raw = raw_future.result()
        direct = DirectCaller(client, worker, fast_future.key)
        call = ("run", ("hello",), {})
        log("latency layers ...")
        results["latency"] = interleaved_latency(
            {
                "proxy.run": lambda: proxy.run("hello"),
                "ReplicaSet.call": lambda: replicas.call(*call),
                "actor.call (ModelActor handle)": lambda: actor.call(*call).result(),
                "actor.ping (async, on loop)": lambda: actor.ping().result(),
                "raw sync method": lambda: raw.ping(1).result(),
                "raw async method": lambda: raw.aping(1).result(),
                "proto: call_inline via handle": lambda: fast.call_inline(*call).result(),
                "proto: call via 1-hop DirectCaller": lambda: direct.call("call", *call),
                "proto: call_inline via DirectCaller": lambda: direct.call("call_inline", *call),
                "proto: pickled call, executor, 1-hop": lambda: direct.call_pickled(
                    *call, inline=False
                ),
                "proto: pickled call_inline, 1-hop": lambda: direct.call_pickled(
                    *call, inline=True
                ),
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
                "raw sync method": lambda: raw.ping(1).result(),
                "proto: pickled call, executor, 1-hop": lambda: direct.call_pickled(
                    *call, inline=False
                ),
                "proto: pickled call_inline, 1-hop": lambda: direct.call_pickled(
                    *call, inline=True
                ),
            },
            cpu_rounds,
            200,
        )
        log("throughput ...")
        coalesced = Coalescer(direct)
        pickled = Coalescer(direct, pickled=True)
        pickled_64 = Coalescer(direct, pickled=True)
        pickled_depth1 = Coalescer(direct, pickled=True, depth=1)
        results["throughput"] = interleaved_rates(
            {
                "raw actor, pipelined (200 outstanding)": lambda: pipelined_rate(
                    lambda i: raw.ping(i), lambda fs: [f.result() for f in fs], 200, duration
                ),
                "raw actor, 16 threads": lambda: threaded_rate(
                    lambda: raw.ping(1).result(), 16, duration
                ),
                "proxy.run, 16 threads": lambda: threaded_rate(
                    lambda: proxy.run("hello"), 16, duration
                ),
                "proto: pickled call, 1-hop, 16 threads": lambda: threaded_rate(
                    lambda: direct.call_pickled(*call, inline=False), 16, duration
                ),
                "proto: coalesced call_batch, 16 threads": lambda: threaded_rate(
                    lambda: coalesced.call(*call), 16, duration
                ),
                "proto: coalesced + pickled, 16 threads": lambda: threaded_rate(
                    lambda: pickled.call(*call), 16, duration
                ),
                "proto: coalesced + pickled, depth 1, 16 thr": lambda: threaded_rate(
                    lambda: pickled_depth1.call(*call), 16, duration
                ),
                "proto: coalesced + pickled, 64 threads": lambda: threaded_rate(
                    lambda: pickled_64.call(*call), 64, duration
                ),
            },
            repeats,
        )
        results["coalescing"] = {
            name: c.calls / max(c.batches, 1)
            for name, c in (
                ("call_batch, 16 threads", coalesced),
                ("pickled, 16 threads", pickled),
                ("pickled, depth 1, 16 threads", pickled_depth1),
                ("pickled, 64 threads", pickled_64),
            )
        }
        proxy.close()
        fast_future.release()
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
    out = ["== fast path: latency by layer (sequential, interleaved) =="]
    lat = results["latency"]
    base = lat["raw sync method"]["p50_us"]
    out.append(f"{'layer / prototype':42s} {'p50 us':>8s} {'p99 us':>8s} {'vs raw':>7s}")
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
    batches = ", ".join(f"{v:.1f} ({k})" for k, v in results["coalescing"].items())
    out.append(f"mean calls per batch message: {batches}")
    out.append("")
    ser = results["serialization"]
    out.append(
        f"comm-layer dumps+loads in-process: request {ser['request_dumps_loads_us']:.0f} us, "
        f"response {ser['response_dumps_loads_us']:.0f} us"
    )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
