"""A served model's calls, replicas and loads, as this process's Prometheus scrape shows them.

Real calls on a LocalCluster with worker processes; the scrape is prometheus_client's own
text format, parsed back.
"""

from __future__ import annotations

import os
import threading

import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll, run_in_threads
from dask_testlib import save_fault_model
from metrics_support import scrape, value

from caikit_dask import DaskModelInitializer
from caikit_dask.errors import ModelOverloaded
from caikit_dask.loading.wire.protocol import MAX_CONCURRENCY
from caikit_dask.metrics.families import CALL_BUCKETS


def _fault_proxy(connection, tmp_path, call_timeout: str):
    path = save_fault_model(str(tmp_path / "fault-model"))
    settings = {"replicas": 1, "call_timeout": call_timeout, "max_queued_calls": 0}
    initializer = DaskModelInitializer({"connection": connection, **settings}, "metrics")
    return initializer.init(ModuleConfig.load(path))


@pytest.fixture
def fault_proxy(connection, tmp_path):
    proxy = _fault_proxy(connection, tmp_path, "1s")  # a 3 s call times out
    yield proxy
    proxy.close()


@pytest.fixture
def patient_proxy(connection, tmp_path):
    proxy = _fault_proxy(connection, tmp_path, "60s")
    yield proxy
    proxy.close()


def test_calls_are_counted_by_outcome_and_timed(fault_proxy):
    before = scrape()
    for _ in range(3):
        fault_proxy.run("hello")
    with pytest.raises(KeyError):
        fault_proxy.run("raise:boom")
    with pytest.raises(TimeoutError):
        fault_proxy.run("sleep:3")
    after = scrape()
    labels = {"model": "fault-model", "method": "run"}

    def moved(name: str, **extra: str) -> float:
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    assert moved("caikit_dask_model_calls_total", outcome="ok") == 3
    assert moved("caikit_dask_model_calls_total", outcome="error") == 1
    assert moved("caikit_dask_model_calls_total", outcome="timeout") == 1
    assert moved("caikit_dask_model_call_duration_seconds_count") == 5
    assert moved("caikit_dask_model_call_duration_seconds_sum") >= 1.0  # the timeout's second
    assert moved("caikit_dask_model_call_duration_seconds_bucket", le="60.0") == 5
    assert CALL_BUCKETS[0] == 0.0001 and CALL_BUCKETS[-1] == 60.0


def test_overloaded_calls_and_calls_in_flight(patient_proxy):
    patient_proxy.run("warm")
    labels = {"model": "fault-model"}
    before = scrape()

    def busy(_: int):
        return patient_proxy.run("sleep:6")  # long enough to be seen in flight under load

    threads = [threading.Thread(target=busy, args=(i,)) for i in range(MAX_CONCURRENCY)]
    for thread in threads:
        thread.start()
    poll(
        lambda: value(scrape(), "caikit_dask_model_calls_in_flight", **labels) == MAX_CONCURRENCY,
        timeout=10,
        what="calls in flight on the metric",
    )
    with pytest.raises(ModelOverloaded):
        patient_proxy.run("refused")  # max_queued_calls=0 and the replica runs 4 at once
    for thread in threads:
        thread.join(60)
    after = scrape()
    refused = value(
        after, "caikit_dask_model_calls_total", **labels, method="run", outcome="overloaded"
    ) - value(before, "caikit_dask_model_calls_total", **labels, method="run", outcome="overloaded")
    assert refused == 1
    assert value(after, "caikit_dask_model_calls_in_flight", **labels) == 0
    assert value(after, "caikit_dask_model_calls_queued", **labels) == 0


def test_replicas_by_state_and_loads_by_reason(connection, trained_model_dir, collect_garbage):
    before = scrape()
    initializer = DaskModelInitializer({"connection": connection, "replicas": 2}, "metrics-2")
    proxy = initializer.init(ModuleConfig.load(trained_model_dir))
    model = os.path.basename(trained_model_dir)
    try:
        samples = scrape()
        assert value(samples, "caikit_dask_model_replicas", model=model, state="routed") == 2
        assert value(samples, "caikit_dask_model_replicas", model=model, state="starting") == 0
        assert value(samples, "caikit_dask_model_target_replicas", model=model) == 2
        loads = value(samples, "caikit_dask_model_loads_total", model=model, reason="load")
        assert (
            loads - value(before, "caikit_dask_model_loads_total", model=model, reason="load") == 2
        )
        assert (
            value(
                samples, "caikit_dask_model_load_duration_seconds_count", model=model, reason="load"
            )
            >= 2
        )
        items = [item for item in proxy.run_stream("Great start. Awful ending.")]  # once
        assert items
        streamed = scrape()
        for name in ("caikit_dask_model_calls_total",):
            ok = value(streamed, name, model=model, method="run_stream", outcome="ok")
            assert ok - value(samples, name, model=model, method="run_stream", outcome="ok") == 1
    finally:
        proxy.close()
    closed = scrape()
    assert ("caikit_dask_model_replicas", (("model", model), ("state", "routed"))) not in closed


def test_a_call_costs_no_labels_lookup(fault_proxy, monkeypatch):
    """The children are bound at load: a call never asks a metric family for labels."""
    from caikit_dask.metrics import families

    asked = []
    for family in (families.calls, families.call_duration):
        original = family.labels
        monkeypatch.setattr(
            family, "labels", lambda *a, _o=original, **k: asked.append(a) or _o(*a, **k)
        )
    outcomes = run_in_threads(lambda i: fault_proxy.run(f"call {i}"), 4)
    assert all(not isinstance(result, BaseException) for result, _ in outcomes)
    assert asked == []
