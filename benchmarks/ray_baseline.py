"""The Ray actor baseline, run in its own process.

Ray starts its own daemons (GCS, raylet, workers); running it in a separate
process before the Dask cluster starts keeps the two from competing for the
same two cores and keeps Ray's threads out of the process whose RSS and
latency the other benchmarks measure. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from .stats import interleaved_latency, interleaved_rates, pipelined_rate, threaded_rate


def measure(rounds: int, per_round: int, duration: float, repeats: int, threads: int) -> dict:
    import ray

    started = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    startup = time.perf_counter() - started
    try:

        @ray.remote
        class RayEcho:
            def ping(self, value):
                return value

        actor = RayEcho.remote()
        ray.get(actor.ping.remote(0))
        latency = interleaved_latency(
            {"ray_actor": lambda: ray.get(actor.ping.remote(1))}, rounds, per_round
        )["ray_actor"]
        rates = interleaved_rates(
            {
                "ray_actor_threads": lambda: threaded_rate(
                    lambda: ray.get(actor.ping.remote(1)), threads, duration
                ),
                "ray_actor_pipelined": lambda: pipelined_rate(
                    lambda i: actor.ping.remote(i), ray.get, 200, duration
                ),
            },
            repeats,
        )
        return {
            "ray_version": ray.__version__,
            "startup_s": startup,
            "latency": latency,
            "throughput": rates,
            "serve": _serve(rounds, per_round, duration, repeats, threads),
        }
    finally:
        ray.shutdown()


def _serve(rounds: int, per_round: int, duration: float, repeats: int, threads: int) -> dict:
    """A Ray Serve deployment (1 replica) called through its ``DeploymentHandle``, as a
    Python caller of Ray Serve would; skipped when ``ray[serve]`` is not installed."""
    try:
        from ray import serve
    except ImportError as err:
        return {"skipped": f"ray[serve] is not installed ({err})"}
    try:

        @serve.deployment(num_replicas=1, max_ongoing_requests=1000)
        class ServeEcho:
            def __call__(self, value):
                return value

        handle = serve.run(ServeEcho.bind(), name="echo", route_prefix=None)
        handle.remote(0).result()
        latency = interleaved_latency(
            {"ray_serve": lambda: handle.remote(1).result()}, rounds, max(1, per_round // 2)
        )["ray_serve"]
        rates = interleaved_rates(
            {
                "ray_serve_threads": lambda: threaded_rate(
                    lambda: handle.remote(1).result(), threads, duration
                )
            },
            repeats,
        )
        return {"latency": latency, "throughput": rates}
    except Exception as err:  # noqa: BLE001 - reported in the table as skipped
        return {"error": f"{type(err).__name__}: {err}"}
    finally:
        with contextlib.suppress(Exception):  # already down
            serve.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError as err:
        print(json.dumps({"skipped": f"ray is not importable ({err})"}))
        return 0
    result = measure(args.rounds, args.per_round, args.duration, args.repeats, args.threads)
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
