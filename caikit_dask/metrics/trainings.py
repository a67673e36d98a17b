"""Trainings submitted from this process: a counter, and their status read at scrape time."""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from typing import Any

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import families

_lock = threading.Lock()
_trainings: weakref.WeakSet[Any] = weakref.WeakSet()


def training_started(training: Any) -> None:
    """Count a training submitted here, and report its status while this process holds it."""
    families.trainings_started.inc()
    with _lock:
        _trainings.add(training)


def _family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "caikit_dask_trainings",
        "Trainings submitted from this process and still held here, by status.",
        labels=("status",),
    )


class StartedTrainings(Collector):
    def describe(self) -> list[GaugeMetricFamily]:
        return [_family()]

    def collect(self) -> list[GaugeMetricFamily]:
        family = _family()
        with _lock:
            held = list(_trainings)
        by_status: dict[str, int] = defaultdict(int)
        for training in held:
            try:
                by_status[training.status().name] += 1
            except Exception:  # noqa: BLE001, S112 - its client is closing: not counted
                continue
        for status, count in sorted(by_status.items()):
            family.add_metric((status,), count)
        return [family]


REGISTRY.register(StartedTrainings())
