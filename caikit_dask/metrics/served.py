"""Gauges read at scrape time: the served models' replicas and load.

The call path updates no gauge: a scrape walks the registry of served models
(``loading.replicas.registry``) and reports what it holds now. Models of the same name
(loaded twice) are summed.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..loading.replicas.backpressure import queued
from ..loading.replicas.registry import served


def _families() -> tuple[GaugeMetricFamily, ...]:
    return (
        GaugeMetricFamily(
            "caikit_dask_model_replicas",
            "Replicas of a model served by this process, by state (starting, routed, "
            "draining, dead).",
            labels=("model", "state"),
        ),
        GaugeMetricFamily(
            "caikit_dask_model_calls_in_flight",
            "Calls sent to a model's replicas and not answered yet (open streams included).",
            labels=("model",),
        ),
        GaugeMetricFamily(
            "caikit_dask_model_calls_queued",
            "Calls beyond what the model's live replicas run at once, plus those waiting "
            "for a live replica: what max_queued_calls bounds.",
            labels=("model",),
        ),
        GaugeMetricFamily(
            "caikit_dask_model_target_replicas",
            "Replicas the model is kept at: the autoscaling target of an autoscaled model, "
            "else its replicas setting.",
            labels=("model",),
        ),
    )


class ServedModels(Collector):
    """The gauges, from what this process serves and trains right now."""

    def describe(self) -> list[GaugeMetricFamily]:
        return list(_families())

    def collect(self) -> list[GaugeMetricFamily]:
        replicas, in_flight, waiting, target = _families()
        states: dict[tuple[str, str], int] = defaultdict(int)
        load: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for replica_set in served.served():
            model = replica_set.metrics.model or replica_set.spec.module_id
            for state, count in replica_set.states().items():
                states[model, state.value] += count
            outstanding, _, live = replica_set.sample()
            totals = load[model]
            totals[0] += outstanding
            totals[1] += queued(outstanding + replica_set.waiting, live)
            totals[2] += replica_set.count
        for (model, state), count in sorted(states.items()):
            replicas.add_metric((model, state), count)
        for model, (outstanding, queue, count) in sorted(load.items()):
            in_flight.add_metric((model,), outstanding)
            waiting.add_metric((model,), queue)
            target.add_metric((model,), count)
        return [replicas, in_flight, waiting, target]


_collector = ServedModels()
REGISTRY.register(_collector)
