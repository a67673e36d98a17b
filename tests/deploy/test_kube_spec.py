"""caikit_dask.kubernetes: DaskCluster specs that start on distributed >= 2026.6.

The specs are checked against the CRDs that the installed dask-kubernetes ships
and against the Kubernetes schemas once the operator's own code has turned them
into Deployments. ``build_kube_cluster`` runs the real KubeCluster constructor;
only the steps that talk to a Kubernetes API are replaced, as none runs here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from deploy_support import REPO_ROOT, crd_errors

pytest.importorskip("dask_kubernetes")

from caikit_dask import kubernetes as kube  # noqa: E402

GPU = "nvidia.com/gpu"


def _containers(spec: dict, part: str) -> list[dict]:
    return spec["spec"][part]["spec"]["containers"]


def _spec(**kwargs) -> dict:
    defaults = dict(
        image="caikit-dask:0.1.0",
        n_workers=2,
        resources={"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}},
    )
    return kube.kube_cluster_spec("caikit-dask", **{**defaults, **kwargs})


def test_module_imports_without_dask_kubernetes():
    """``caikit_dask`` must import without the ``kubernetes`` extra, so import lazily."""
    code = textwrap.dedent(
        """
        import sys
        import caikit_dask.kubernetes
        assert "dask_kubernetes" not in sys.modules, "imported dask_kubernetes eagerly"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=120)


def test_scheduler_and_workers_start_with_dask_subcommands():
    spec = _spec()
    assert _containers(spec, "scheduler")[0]["args"][:2] == ["dask", "scheduler"]
    assert _containers(spec, "worker")[0]["args"][:2] == ["dask", "worker"]
    # dask-kubernetes' own default worker command is the removed executable.
    old = kube.kube_cluster_spec("old", worker_command="dask-worker --nthreads 2")
    assert _containers(old, "worker")[0]["args"][:4] == ["dask", "worker", "--nthreads", "2"]


def test_spec_matches_the_crd():
    spec = _spec(env={"EXAMPLE": "1"}, security_context={"runAsNonRoot": True})
    assert spec["kind"] == "DaskCluster"
    assert crd_errors(spec) == []


def test_gpu_requests_stay_off_the_scheduler():
    spec = _spec(resources={"requests": {"cpu": "1", "memory": "4Gi", GPU: 1}})
    scheduler = _containers(spec, "scheduler")[0]["resources"]
    assert scheduler == {"requests": {"cpu": "1", "memory": "4Gi"}}
    worker = _containers(spec, "worker")[0]["resources"]
    # A device request needs an equal limit; quantities are strings in the CRD.
    assert worker["requests"][GPU] == worker["limits"][GPU] == "1"
    assert crd_errors(spec) == []


def test_explicit_scheduler_resources_win():
    spec = _spec(scheduler_resources={"requests": {"cpu": "250m"}})
    assert _containers(spec, "scheduler")[0]["resources"] == {"requests": {"cpu": "250m"}}


def test_gpu_worker_group():
    group = kube.gpu_worker_group_spec("caikit-dask", image="caikit-dask:0.1.0")
    assert group["kind"] == "DaskWorkerGroup"
    assert group["metadata"]["name"] == "caikit-dask-gpu"
    assert group["spec"]["cluster"] == "caikit-dask"
    container = group["spec"]["worker"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["dask", "worker"]
    assert args[args.index("--resources") + 1] == "GPU=1"
    assert container["resources"]["requests"][GPU] == "1"
    assert container["resources"]["limits"][GPU] == "1"
    assert crd_errors(group) == []


def test_worker_group_with_several_dask_resources():
    group = kube.worker_group_spec(
        "c", "big", resources={"GPU": 2, "MEMORY": 16e9}, k8s_resources={"limits": {"cpu": 4}}
    )
    container = group["spec"]["worker"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--resources") + 1] == "GPU=2 MEMORY=16000000000"
    assert container["resources"]["limits"] == {"cpu": "4", GPU: "2"}
    assert crd_errors(group) == []


def test_kubernetes_resource_fields_are_checked():
    with pytest.raises(ValueError, match="requests"):
        kube.kube_cluster_spec("c", resources={"GPU": 1})


@pytest.mark.parametrize("version", ["latest", "1.30.0"])
def test_operator_renders_valid_deployments(version):
    """Feed the spec through the operator's builders, as it would in a cluster."""
    kv = pytest.importorskip("kubernetes_validate")
    pytest.importorskip("kopf")
    from dask_kubernetes.operator.controller import controller

    version = kv.latest_version() if version == "latest" else version
    spec = _spec(
        security_context={"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        volumes=[{"name": "models", "persistentVolumeClaim": {"claimName": "caikit-models"}}],
        volume_mounts=[{"name": "models", "mountPath": "/mnt/caikit"}],
    )
    group = kube.gpu_worker_group_spec("caikit-dask", image="caikit-dask:0.1.0")
    objects = [
        controller.build_scheduler_deployment_spec(
            "caikit-dask", spec["spec"]["scheduler"]["spec"], {}, {}
        ),
        controller.build_scheduler_service_spec(
            "caikit-dask", spec["spec"]["scheduler"]["service"], {}, {}
        ),
    ]
    for name, worker in (
        ("caikit-dask-default", spec["spec"]["worker"]),
        ("gpu", group["spec"]["worker"]),
    ):
        objects.append(
            controller.build_worker_deployment_spec(
                name, "ns", "caikit-dask", "0123456789", worker["spec"], {}, {}
            )
        )
    for obj in objects:
        kv.validate(obj, version, strict=True)
    assert objects[1]["metadata"]["name"] == "caikit-dask-scheduler"


def test_is_kube_cluster_class():
    from dask_kubernetes.operator import KubeCluster
    from distributed import LocalCluster

    class Custom(KubeCluster):
        pass

    assert kube.is_kube_cluster_class(KubeCluster)
    assert kube.is_kube_cluster_class(Custom)
    assert not kube.is_kube_cluster_class(LocalCluster)
    assert not kube.is_kube_cluster_class("dask_kubernetes.operator.KubeCluster")


class OfflineKubeCluster:
    """Built on demand: KubeCluster with its Kubernetes API calls recorded instead of sent."""

    @staticmethod
    def make():
        from dask_kubernetes.operator import KubeCluster
        from distributed.core import Status

        class Offline(KubeCluster):
            created: list = []

            async def _start(self):
                type(self).created.append(("DaskCluster", self._custom_cluster_spec))
                self.status = Status.running

            async def _add_worker_group(self, name, custom_spec=None, **kwargs):
                type(self).created.append(("DaskWorkerGroup", name, custom_spec))

            async def _close(self, timeout=3600):
                self.status = Status.closed

        Offline.created = []
        return Offline


def test_build_kube_cluster_creates_cluster_and_worker_groups():
    cls = OfflineKubeCluster.make()
    kwargs = {
        "name": "caikit-dask",
        "namespace": "ns",
        "image": "caikit-dask:0.1.0",
        "n_workers": 1,
        "resources": {"requests": {"cpu": "1", "memory": "4Gi"}},
        "worker_groups": {"gpu": {"n_workers": 1, "resources": {"GPU": 1}}},
        "shutdown_on_close": False,
        "quiet": True,
    }
    cluster = kube.build_kube_cluster(cls, kwargs)
    try:
        assert cluster.name == "caikit-dask"
        assert cluster.namespace == "ns"
        (kind, spec), (group_kind, group_name, worker) = cls.created
        assert kind == "DaskCluster" and group_kind == "DaskWorkerGroup"
        assert _containers(spec, "scheduler")[0]["args"][:2] == ["dask", "scheduler"]
        assert crd_errors(spec) == []
        assert group_name == "gpu"
        container = worker["spec"]["containers"][0]
        assert container["image"] == "caikit-dask:0.1.0"
        assert container["args"][container["args"].index("--resources") + 1] == "GPU=1"
        # The group inherits the cluster's Kubernetes resources and adds the GPU.
        assert container["resources"]["requests"] == {"cpu": "1", "memory": "4Gi", GPU: "1"}
        group = {
            "apiVersion": "kubernetes.dask.org/v1",
            "kind": "DaskWorkerGroup",
            "metadata": {"name": "caikit-dask-gpu"},
            "spec": {"cluster": "caikit-dask", "worker": worker},
        }
        assert crd_errors(group) == []
    finally:
        cluster.close()
    assert kwargs["worker_groups"], "the caller's kwargs must not be consumed"


def test_build_kube_cluster_fixes_a_custom_cluster_spec():
    cls = OfflineKubeCluster.make()
    from dask_kubernetes.operator import make_cluster_spec

    custom = make_cluster_spec("custom", image="caikit-dask:0.1.0", n_workers=1)
    cluster = kube.build_kube_cluster(cls, {"custom_cluster_spec": custom, "quiet": True})
    try:
        (_, spec) = cls.created[0]
        assert cluster.name == "custom"
        assert _containers(spec, "scheduler")[0]["args"][:2] == ["dask", "scheduler"]
        assert _containers(spec, "worker")[0]["args"][:2] == ["dask", "worker"]
    finally:
        cluster.close()


def test_build_kube_cluster_rejects_unknown_worker_group_keys():
    cls = OfflineKubeCluster.make()
    with pytest.raises(ValueError, match="worker_groups.gpu.gpus"):
        kube.build_kube_cluster(cls, {"name": "c", "worker_groups": {"gpu": {"gpus": 1}}})
    assert cls.created == []


def test_build_kube_cluster_passes_other_classes_through():
    from distributed import LocalCluster

    cluster = kube.build_kube_cluster(
        LocalCluster, {"n_workers": 1, "processes": False, "dashboard_address": "127.0.0.1:0"}
    )
    try:
        assert isinstance(cluster, LocalCluster)
    finally:
        cluster.close()
