"""Benchmark 12: the same trivial model served by a real ``caikit.runtime``, LOCAL vs DASK.

Two ``python -m caikit.runtime`` processes run side by side, one with caikit's LOCAL
initializer, one with DASK on this run's cluster (direct calls, the default), each
serving the trivial ``Greeter`` of the runtime tests' ``tiny_runtime_lib``. Sequential
latency over gRPC and HTTP is interleaved round by round across the four variants, then
16 client threads (each with its own HTTP session; gRPC threads share one channel, as a
gRPC client does) measure throughput. What users see: the runtime's own cost is in both;
the difference is the DASK path.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from .environment import REPO, log
from .session import Benchmark
from .stats import interleaved_latency, interleaved_rates, threaded_rate

RUNTIME_TESTS = REPO / "tests" / "runtime"
SERVICE = "caikit.runtime.TinyRuntimeLib.TinyRuntimeLibService"


class RuntimeBenchmark(Benchmark):
    sections = ("runtime",)

    def runtime(self) -> dict:
        try:
            sys.path.insert(0, str(RUNTIME_TESTS))
            import requests
            from runtime_server import start_runtime
            from tiny_runtime_lib import Greeter
        except ImportError as err:
            return {"skipped": f"needs the runtime and test extras ({err})"}
        session, plan = self.session, self.plan
        # The workers load the Greeter: its library must import there too.
        session.clients[True].run(_on_path, str(RUNTIME_TESTS))
        dask = {
            "model_management": {
                "initializers": {
                    "default": {
                        "type": "DASK",
                        "import_class": "caikit_dask.DaskModelInitializer",
                        "config": {"connection": {"address": session.address}},
                    }
                }
            }
        }
        workdir = Path(session.workdir) / "runtime"
        servers: dict[str, Any] = {}
        try:
            for name, config in (("local", {}), ("dask", dask)):
                servers[name] = start_runtime(
                    workdir / name, config=config, models={"greeter": Greeter.train("Hi")}
                )
                log(f"caikit.runtime ({name}) up in {servers[name].startup_seconds:.1f} s")
            calls = {}
            for name, server in servers.items():
                calls[f"{name}_grpc"] = _grpc_caller(server)
                calls[f"{name}_http"] = _http_caller(server, requests)
            for call in calls.values():
                call()  # the model answers (DASK: loaded, its connection open)
            latency = interleaved_latency(
                calls, plan.latency_rounds, max(1, plan.latency_per_round // 2)
            )
            threads, duration = plan.caller_threads, plan.throughput_duration
            rates = interleaved_rates(
                {
                    f"{name}_threads": (lambda call=call: threaded_rate(call, threads, duration))
                    for name, call in calls.items()
                },
                plan.throughput_repeats,
            )
            return {"threads": threads, "latency": latency, "throughput": rates}
        finally:
            for server in servers.values():
                server.stop()


def _on_path(directory: str) -> None:
    """On a worker: make ``directory``'s packages importable."""
    if directory not in sys.path:
        sys.path.insert(0, directory)


def _grpc_caller(server: Any) -> Any:
    """One unary ``GreetingTaskPredict`` call; the stub is built once (not per call)."""
    _, request_class, reply_class = server._method(f"{SERVICE}/GreetingTaskPredict")
    rpc = server.channel.unary_unary(
        f"/{SERVICE}/GreetingTaskPredict",
        request_serializer=request_class.SerializeToString,
        response_deserializer=reply_class.FromString,
    )
    request = request_class(name="Ann")
    metadata = [("mm-model-id", "greeter")]
    return lambda: rpc(request, metadata=metadata, timeout=60)


def _http_caller(server: Any, requests: Any) -> Any:
    """One ``POST /api/v1/task/greeting``, on a keep-alive session per calling thread."""
    local = threading.local()
    url = f"{server.http_url}/api/v1/task/greeting"
    body = {"model_id": "greeter", "inputs": "Ann"}

    def call() -> None:
        http = getattr(local, "session", None)
        if http is None:
            http = local.session = requests.Session()
        response = http.post(url, json=body, timeout=60)
        response.raise_for_status()

    return call
