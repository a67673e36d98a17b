"""Benchmark 7: batch scoring, many trivial inputs through a model on 2 replicas.

``proxy.map`` (one caller thread, a window of coalesced calls) against the two
ways a user would otherwise score a list: a ``proxy.run`` loop from 16 threads
on the same proxy, and ``Bag.map_partitions`` where each task loads the model
from disk with ``caikit.load`` and runs it in the task. Each variant scores the
same inputs and returns the results, in order, to this process; the variants
are measured in alternating rounds and the median of rounds is reported.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from .session import Benchmark

# Inputs per Bag partition (about what ``from_sequence`` picks for a list this long).
BAG_PARTITION_SIZE = 5000


class BatchBenchmark(Benchmark):
    sections = ("batch",)

    def prepare(self) -> None:
        from .modules import BenchEcho

        self.echo_path = str(self.session.workdir / "batch-echo")
        BenchEcho.train().save(self.echo_path)

    def batch(self) -> dict:
        plan, session = self.plan, self.session
        inputs = [f"input {i}" for i in range(plan.batch_inputs)]
        expected = [f"input {i}" for i in range(plan.batch_inputs)]
        proxy = session.load(self.echo_path, replicas=2)
        client = session.clients[True]
        partitions = max(2, len(inputs) // BAG_PARTITION_SIZE)
        variants: dict[str, Callable[[], list]] = {
            "proxy_map": lambda: proxy.map(inputs, progress=False),
            "proxy_run_threads": lambda: _run_from_threads(proxy, inputs, plan.caller_threads),
            "bag_load_per_task": lambda: _bag_with_load(client, self.echo_path, inputs, partitions),
        }
        rates: dict[str, list[float]] = {name: [] for name in variants}
        try:
            workers = sorted({r["worker"] for r in proxy.replicas})
            for _ in range(plan.batch_repeats):
                for name, score in variants.items():
                    started = time.perf_counter()
                    results = score()
                    elapsed = time.perf_counter() - started
                    if [r.text for r in results] != expected:
                        raise AssertionError(f"{name} returned results out of input order")
                    rates[name].append(len(inputs) / elapsed)
        finally:
            proxy.close()
        return {
            "inputs": len(inputs),
            "replicas": len(workers),
            "threads": plan.caller_threads,
            "bag_partitions": partitions,
            "variants": {
                name: {"calls_per_s": statistics.median(values), "rounds": values}
                for name, values in rates.items()
            },
        }


def _run_from_threads(proxy: Any, inputs: list, threads: int) -> list:
    """``proxy.run`` on every input from ``threads`` threads, results in input order."""
    results: list = [None] * len(inputs)
    errors: list[BaseException] = []

    def caller(first: int) -> None:
        try:
            for index in range(first, len(inputs), threads):
                results[index] = proxy.run(inputs[index])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    callers = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(threads)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} caller thread(s) failed: {errors[0]!r}") from errors[0]
    return results


def _bag_with_load(client: Any, path: str, inputs: list, partitions: int) -> list:
    import dask.bag as db

    bag = db.from_sequence(inputs, npartitions=partitions)
    return client.compute(bag.map_partitions(_load_and_score, path), sync=True)


def _load_and_score(texts: list, path: str) -> list:
    """Run in a Dask task: load the model from disk, as a task without actors must."""
    import caikit

    model = caikit.load(path)
    return [model.run(text) for text in texts]
