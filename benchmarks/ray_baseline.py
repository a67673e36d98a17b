"""The Ray actor baseline, run in its own process.

Ray starts its own daemons (GCS, raylet, workers); running it in a separate
process before the Dask cluster starts keeps the two from competing for the
same two cores and keeps Ray's threads out of the process whose RSS and
latency the other benchmarks measure. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
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
        }
    finally:
        ray.shutdown()


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
