"""Reading this process's Prometheus metrics the way a scrape does."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def scrape(text: str | None = None) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted label pairs): value}`` from a scrape (this process's, or
    ``text`` from a metrics endpoint)."""
    text = generate_latest(REGISTRY).decode() if text is None else text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter not incremented yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def exported_names() -> set[str]:
    """Every metric family caikit-dask exports: the caller's and the scheduler's."""
    from caikit_dask.metrics import families, served, trainings
    from caikit_dask.scheduler_view.prometheus import _collector_class

    collectors = [
        families.calls,
        families.call_duration,
        families.loads,
        families.load_failures,
        families.load_duration,
        families.evictions,
        families.moves,
        families.trainings_started,
        served.ServedModels(),
        trainings.StartedTrainings(),
    ]
    names = {metric.name for collector in collectors for metric in collector.describe()}
    names |= {metric.name for metric in _collector_class()().collect()}
    return names


def family_of(series: str) -> str:
    for suffix in SUFFIXES:
        if series.endswith(suffix):
            return series[: -len(suffix)]
    return series
