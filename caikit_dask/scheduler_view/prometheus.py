"""The scheduler's ``/metrics`` gain our gauges: per worker and cluster-wide.

Dask's scheduler serves prometheus_client's default registry on its HTTP server; a
collector registered there is read at each scrape, from the books (nothing is updated as
models come and go). Without prometheus_client on the scheduler there is nothing to add.

One collector per process, whatever number of schedulers it runs (a LocalCluster's runs
in its caller's process, and tests start several): each scheduler's view joins the one
collector, kept on the registry itself, as this module is sent anew with every plugin.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .snapshot import TRAINING_STATUSES


def _collector_class() -> Any:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class SchedulerModels(Collector):
        def __init__(self) -> None:
            self.views: list[Any] = []

        def describe(self) -> list[Any]:
            return []  # names are the views'; read at scrape time

        def collect(self) -> list[Any]:
            worker_models = GaugeMetricFamily(
                "caikit_dask_worker_models",
                "Model replicas booked on a worker (loaded or loading).",
                labels=("worker",),
            )
            booked = GaugeMetricFamily(
                "caikit_dask_worker_model_memory_booked_bytes",
                "Worker memory booked by the models placed on it.",
                labels=("worker",),
            )
            limit = GaugeMetricFamily(
                "caikit_dask_worker_model_memory_bytes",
                "Ceiling placement fills a worker's process memory to: "
                "memory_fraction x pause threshold x memory_limit.",
                labels=("worker",),
            )
            replicas = GaugeMetricFamily(
                "caikit_dask_cluster_model_replicas",
                "Replicas of a model on the cluster, from every process, by state "
                "(loaded, loading).",
                labels=("model", "state"),
            )
            trainings = GaugeMetricFamily(
                "caikit_dask_cluster_trainings",
                "Trainings the scheduler keeps, from every process, by status.",
                labels=("status",),
            )
            evictions = CounterMetricFamily(
                "caikit_dask_cluster_evictions",
                "Replicas evicted to make room for another model, since the view started.",
            )
            moves = CounterMetricFamily(
                "caikit_dask_cluster_moves",
                "Replicas moved off retiring workers, since the view started.",
            )
            counts: dict[tuple[str, str], int] = defaultdict(int)
            by_status: dict[str, int] = dict.fromkeys(TRAINING_STATUSES, 0)
            evicted = moved = 0
            for view in list(self.views):
                status = view.status()
                for worker in status["workers"]:
                    worker_models.add_metric((worker["worker"],), worker["models"])
                    booked.add_metric((worker["worker"],), worker["booked"])
                    if worker["model_memory"] is not None:
                        limit.add_metric((worker["worker"],), worker["model_memory"])
                for model in status["models"]:
                    for replica in model["replicas"]:
                        counts[model["model"], replica["state"]] += 1
                for name, count in status["trainings"]["counts"].items():
                    by_status[name] += count
                evicted += view.evicted_total
                moved += view.moved_total
            for labels, count in sorted(counts.items()):
                replicas.add_metric(labels, count)
            for name, count in by_status.items():
                trainings.add_metric((name,), count)
            evictions.add_metric((), evicted)
            moves.add_metric((), moved)
            return [worker_models, booked, limit, replicas, trainings, evictions, moves]

    return SchedulerModels


_ON_REGISTRY = "caikit_dask_scheduler_views"  # the process's one collector


def register_collector(view: Any) -> Any:
    """Add the view's gauges to the default registry; returns the collector (None without
    prometheus_client)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return None
    collector = getattr(REGISTRY, _ON_REGISTRY, None)
    if collector is None:
        collector = _collector_class()()
        REGISTRY.register(collector)
        setattr(REGISTRY, _ON_REGISTRY, collector)
    collector.views.append(view)
    return collector


def unregister_collector(collector: Any, view: Any) -> None:
    """The view's scheduler closed: its gauges go (the collector stays for the next)."""
    if collector is not None and view in collector.views:
        collector.views.remove(view)
