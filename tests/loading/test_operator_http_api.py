"""What the dask-kubernetes operator does to a cluster serving models, over the
scheduler's HTTP API (the routes the DaskCluster manifest turns on): it reads the
adaptive target, and scales a worker group down by retiring ``n`` workers. The
models on a retired worker move first, and no call fails. A Prometheus scrape, which
reads the target too, is not taken for an autoscaler.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from caikit.core.modules import ModuleConfig
from cluster_support import ProcessCluster, calls_until, poll, run_in_threads
from dask_testlib import save_fault_model

from caikit_dask import DaskModelInitializer
from caikit_dask.connection import DaskConnection
from caikit_dask.errors import DaskBackendError
from caikit_dask.loading.scheduler.books import ASKED

pytestmark = pytest.mark.slow

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "base" / "daskcluster.yaml"
TEXT = "What a wonderful day"


def _manifest_scheduler_env() -> dict[str, str]:
    """The environment the DaskCluster manifest gives the scheduler container."""
    cluster = yaml.safe_load(MANIFEST.read_text())
    [container] = cluster["spec"]["scheduler"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container.get("env", [])}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api_cluster(tmp_path):
    cluster = ProcessCluster(
        tmp_path, http_port=_free_port(), scheduler_env=_manifest_scheduler_env()
    )
    cluster.add_worker("a")
    cluster.add_worker("b")
    yield cluster
    DaskConnection.close_all()
    cluster.close()


def _api(cluster: ProcessCluster, route: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.http_port}/api/v1/{route}",
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=150) as response:
        return json.loads(response.read())


def test_the_operator_scales_a_worker_group_down_with_no_failed_call(
    api_cluster, trained_model_dir
):
    initializer = DaskModelInitializer(
        {
            "connection": {"address": api_cluster.address},
            "replicas": 2,
            "call_timeout": "30s",
            "health_check_period": "0.5s",
        },
        "operator-scale-down",
    )
    model = initializer.init(ModuleConfig.load(trained_model_dir))
    expected = model.run(TEXT).label
    assert len({r["worker"] for r in model.replicas}) == 2  # one on each worker
    # No task runs, yet the models fill a worker: the operator keeps at least one.
    assert _api(api_cluster, "adaptive_target") == {"workers": 1}

    stop, calls, retired = threading.Event(), [], {}

    def scale_down_then_stop():
        try:
            poll(lambda: len(calls) > 100, 30, what="traffic before the scale-down")
            retired.update(_api(api_cluster, "retire_workers", {"n": 1}))
            after = len(calls)
            poll(lambda: len(calls) > after + 100, 30, what="traffic after the scale-down")
        finally:
            stop.set()

    operator = threading.Thread(target=scale_down_then_stop)
    operator.start()
    outcomes = run_in_threads(calls_until(model, stop, calls, TEXT), 16, join_timeout=120)
    operator.join(60)

    assert None not in outcomes, "a caller hung"
    assert [err for failures, _ in outcomes for err in failures] == []
    assert set(calls) == {expected}
    [gone] = retired
    remaining = set(api_cluster.worker_names().values())
    assert gone not in remaining and len(remaining) == 1
    assert {r["worker"] for r in model.replicas} == remaining
    assert len(model.replicas) == 2 and model.run(TEXT).label == expected
    model.close()


def _asked_recently(cluster: ProcessCluster) -> bool:
    """Whether the scheduler noted an autoscaler asking for its target (within 30 s)."""
    return cluster.client.run_on_scheduler(
        lambda dask_scheduler: ASKED in dask_scheduler.task_metadata
    )


def test_a_prometheus_scrape_does_not_make_a_fixed_cluster_adaptive(api_cluster, tmp_path):
    path = save_fault_model(str(tmp_path / "model"))
    initializer = DaskModelInitializer(
        {"connection": {"address": api_cluster.address}, "resources": {"MODEL": 1}},
        "prometheus-scrape",
    )
    with pytest.raises(DaskBackendError):  # no worker offers MODEL: fails at once, and
        initializer.init(ModuleConfig.load(path))  # sets up the adaptive-target plugin
    url = f"http://127.0.0.1:{api_cluster.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert b"dask_scheduler_desired_workers" in response.read()
    assert not _asked_recently(api_cluster)
    started = time.monotonic()
    with pytest.raises(DaskBackendError, match="MODEL"):  # still at once: no scale-up wait
        initializer.init(ModuleConfig.load(path))
    assert time.monotonic() - started < 10
    _api(api_cluster, "adaptive_target")  # what dask-kubernetes' autoscaler asks
    assert _asked_recently(api_cluster)
