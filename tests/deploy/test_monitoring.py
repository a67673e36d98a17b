"""deploy/monitoring: the scrape config and the Grafana dashboard, wired to what is exported.

Every metric a dashboard panel queries is one caikit-dask exports (its names read from the
collectors themselves), every PodMonitor and NetworkPolicy selects pods deploy/base makes
and names ports their containers declare.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from deploy_support import BASE_DIR, DEPLOY_DIR, find, load_manifests, strip
from metrics_support import exported_names, family_of

MONITORING = DEPLOY_DIR / "monitoring"


def monitoring_objects() -> list[dict]:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    objects = []
    for name in kustomization["resources"]:
        objects += [doc for doc in yaml.safe_load_all((MONITORING / name).read_text()) if doc]
    for generated in kustomization["configMapGenerator"]:
        for file in generated["files"]:
            assert (MONITORING / file).is_file(), f"configMapGenerator names a missing {file}"
    return objects


def dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def test_every_panel_queries_exported_metrics():
    exported = exported_names()
    assert "caikit_dask_model_calls" in exported and "caikit_dask_worker_models" in exported
    queried = set()
    for panel in dashboard()["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            queried |= {family_of(n) for n in re.findall(r"caikit_dask_[a-z_]+", target["expr"])}
    assert queried <= exported, f"the dashboard queries unknown metrics: {queried - exported}"
    # Every call, replica, load and worker metric has a panel.
    for name in (
        "caikit_dask_model_calls",
        "caikit_dask_model_call_duration_seconds",
        "caikit_dask_model_replicas",
        "caikit_dask_model_calls_queued",
        "caikit_dask_model_loads",
        "caikit_dask_model_evictions",
        "caikit_dask_worker_model_memory_booked_bytes",
        "caikit_dask_cluster_trainings",
    ):
        assert name in queried, f"no panel shows {name}"


def test_the_dashboard_is_importable_grafana_json():
    board = dashboard()
    assert board["uid"] == "caikit-dask" and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "model"}
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"


def _pod_labels_and_ports() -> list[tuple[dict, set[str]]]:
    """(labels, container port names) of the runtime pods and the scheduler pods."""
    objects = load_manifests()
    runtime = find(objects, "Deployment", "caikit-runtime")["spec"]["template"]
    cluster = find(objects, "DaskCluster")
    scheduler_labels = {
        "dask.org/cluster-name": cluster["metadata"]["name"],
        "dask.org/component": "scheduler",
    }
    return [
        (
            runtime["metadata"]["labels"],
            {p["name"] for c in runtime["spec"]["containers"] for p in c.get("ports", [])},
        ),
        (
            scheduler_labels,
            {
                p["name"]
                for c in cluster["spec"]["scheduler"]["spec"]["containers"]
                for p in c.get("ports", [])
            },
        ),
    ]


def _selected(selector: dict) -> list[set[str]]:
    wanted = selector["matchLabels"]
    return [
        ports
        for labels, ports in _pod_labels_and_ports()
        if all(labels.get(k) == v for k, v in wanted.items())
    ]


def test_pod_monitors_select_base_pods_by_a_declared_port():
    monitors = [o for o in monitoring_objects() if o["kind"] == "PodMonitor"]
    assert len(monitors) == 2
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selected = _selected(monitor["spec"]["selector"])
        assert len(selected) == 1, f"{monitor['metadata']['name']} selects {len(selected)} pods"
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in selected[0], endpoint
            assert endpoint["path"] == "/metrics"


def test_network_policies_let_prometheus_reach_the_scraped_ports():
    kv = pytest.importorskip("kubernetes_validate")
    policies = [o for o in monitoring_objects() if o["kind"] == "NetworkPolicy"]
    assert {p["spec"]["ingress"][0]["ports"][0]["port"] for p in policies} == {8086, 8787}
    for policy in policies:
        kv.validate(
            strip({**policy, "metadata": {**policy["metadata"], "namespace": "x"}}),
            kv.latest_version(),
            strict=True,
        )
        assert len(_selected(policy["spec"]["podSelector"])) == 1


def test_the_runtime_pods_are_annotated_for_annotation_based_scraping():
    runtime = yaml.safe_load((BASE_DIR / "runtime-deployment.yaml").read_text())
    annotations = runtime["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8086",
        "prometheus.io/path": "/metrics",
    }
