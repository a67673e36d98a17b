"""A real ``caikit.runtime`` serving through DASK shows our metrics beside its own.

caikit.runtime serves prometheus_client's default registry on its metrics port
(``runtime.metrics``); the proxies live in the runtime's process, so one scrape there
shows caikit's request metrics and caikit-dask's per-model call metrics together.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import requests
from cluster_support import ProcessCluster, process_cluster
from metrics_support import scrape, value
from runtime_server import HERE, free_ports

from caikit_dask.example import TextClassifier

pytestmark = pytest.mark.slow

TASK = "example-text-classification"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterable[ProcessCluster]:
    with process_cluster(tmp_path_factory.mktemp("dask"), {"cpu": {}}, [HERE]) as cluster:
        yield cluster


def test_one_scrape_shows_caikits_metrics_and_ours(cluster, caikit_runtime_factory):
    (metrics_port,) = free_ports(1)
    connection = {"address": cluster.address, "timeout": "20s"}
    server = caikit_runtime_factory(
        config={
            "runtime": {"metrics": {"enabled": True, "port": metrics_port}},
            "model_management": {
                "initializers": {"default": {"type": "DASK", "config": {"connection": connection}}}
            },
        },
        library="caikit_dask",
        models={"classifier": TextClassifier.train(epochs=5)},
    )
    for text in ("What a lovely day", "Awful and slow", "Great value"):
        response = server.http_predict(TASK, "classifier", text)
        assert response.status_code == 200, response.text
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    samples = scrape(text)
    ours = {"model": "classifier", "method": "run"}
    assert value(samples, "caikit_dask_model_calls_total", **ours, outcome="ok") == 3
    assert value(samples, "caikit_dask_model_call_duration_seconds_count", **ours) == 3
    assert value(samples, "caikit_dask_model_replicas", model="classifier", state="routed") == 1
    assert value(samples, "caikit_dask_model_loads_total", model="classifier", reason="load") == 1
    caikits = [name for name, _ in samples if name.startswith("predict_")]
    assert caikits, "caikit.runtime's own request metrics are missing from the scrape"
