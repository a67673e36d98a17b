"""deploy/base against the Kubernetes schemas, the operator's CRDs and itself.

No cluster runs here, so the objects the dask-kubernetes operator would create
from the DaskCluster (scheduler Deployment and Service, worker Deployments) are
rendered with the operator's own builder functions and checked like the rest.
"""

from __future__ import annotations

import re

import pytest
from deploy_support import (
    BASE_DIR,
    crd_errors,
    find,
    load_kustomization,
    load_runtime_config,
    strip,
)

# The newest Kubernetes that kubernetes-validate ships, and an older one still in service.
K8S_VERSIONS = ["latest", "1.30.0"]
CRD_KINDS = ("DaskCluster", "DaskWorkerGroup")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
GPU = "nvidia.com/gpu"


def _validate(obj: dict, version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    if version == "latest":
        version = kv.latest_version()
    kv.validate(strip(obj), version, strict=True)


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_specs(objects: list[dict]):
    """(description, pod spec) of every pod the base creates, directly or via the operator."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            yield f"Deployment {obj['metadata']['name']}", obj["spec"]["template"]["spec"]
        elif obj["kind"] == "DaskCluster":
            yield "DaskCluster scheduler", obj["spec"]["scheduler"]["spec"]
            yield "DaskCluster worker", obj["spec"]["worker"]["spec"]
        elif obj["kind"] == "DaskWorkerGroup":
            yield f"DaskWorkerGroup {obj['metadata']['name']}", obj["spec"]["worker"]["spec"]


def _operator_objects(objects: list[dict]) -> dict[str, list[dict]]:
    """What the operator creates for our DaskCluster and DaskWorkerGroups, built by its code."""
    pytest.importorskip("dask_kubernetes")
    pytest.importorskip("kopf")
    from dask_kubernetes.operator.controller import controller

    cluster = find(objects, "DaskCluster")
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    labels = dict(cluster["metadata"].get("labels", {}))
    scheduler = cluster["spec"]["scheduler"]
    scheduler_labels = {**labels, **scheduler.get("metadata", {}).get("labels", {})}
    built = {
        "scheduler": [
            controller.build_scheduler_deployment_spec(
                name, scheduler["spec"], {}, scheduler_labels
            )
        ],
        "service": [
            controller.build_scheduler_service_spec(name, scheduler["service"], {}, labels)
        ],
        "workers": [],
    }
    groups = [(f"{name}-default", name, cluster["spec"]["worker"], labels)]
    for group in objects:
        if group["kind"] == "DaskWorkerGroup":
            group_labels = {**labels, **group["metadata"].get("labels", {})}
            spec = group["spec"]
            groups.append(
                (group["metadata"]["name"], spec["cluster"], spec["worker"], group_labels)
            )
    for group_name, cluster_name, worker, group_labels in groups:
        worker_labels = {**group_labels, **worker.get("metadata", {}).get("labels", {})}
        built["workers"].append(
            controller.build_worker_deployment_spec(
                worker_group_name=group_name,
                namespace=namespace,
                cluster_name=cluster_name,
                uuid="0123456789",
                pod_spec=worker["spec"],
                annotations={},
                labels=worker_labels,
            )
        )
    for kind_objects in built.values():
        for obj in kind_objects:
            obj["metadata"]["namespace"] = namespace
    return built


# -- kustomization ---------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_only_existing_files():
    kustomization = load_kustomization()
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    for name in listed:
        assert (BASE_DIR / name).is_file(), f"kustomization.yaml lists missing {name}"
    on_disk = {p.name for p in BASE_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == set(listed), f"not listed in kustomization.yaml: {on_disk - set(listed)}"


def test_object_names_are_unique_and_valid(manifests):
    seen = set()
    for obj in manifests:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        assert DNS_LABEL.match(obj["metadata"]["name"]), key
        assert len(obj["metadata"]["name"]) <= 63, key


# -- schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_objects_match_kubernetes_schemas(manifests, version):
    builtin = [o for o in manifests if o["kind"] not in CRD_KINDS]
    assert {o["kind"] for o in builtin} >= {
        "Namespace",
        "PersistentVolumeClaim",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
    }
    for obj in builtin:
        _validate(obj, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_objects_the_operator_creates_match_kubernetes_schemas(manifests, version):
    built = _operator_objects(manifests)
    assert len(built["workers"]) == 2  # default group + GPU group
    for objects in built.values():
        for obj in objects:
            _validate(obj, version)


@pytest.mark.parametrize("kind", CRD_KINDS)
def test_custom_resources_match_the_dask_kubernetes_crds(manifests, kind):
    objects = [o for o in manifests if o["kind"] == kind]
    assert objects, f"no {kind} in deploy/base"
    for obj in objects:
        assert crd_errors(obj) == []


def test_crd_check_catches_mistakes(manifests):
    """The CRD check is only worth something if it fails on what the API server would drop."""
    cluster = strip(find(manifests, "DaskCluster"))
    container = cluster["spec"]["worker"]["spec"]["containers"][0]
    container["volumeMount"] = container.pop("volumeMounts")  # typo: pruned silently by k8s
    container["resources"]["requests"]["cpu"] = 1  # CRD types quantities as strings
    errors = crd_errors(cluster)
    assert any("volumeMount" in e for e in errors), errors
    assert any("requests/cpu" in e for e in errors), errors


# -- Dask topology ---------------------------------------------------------------------


def test_dask_processes_use_the_dask_cli_subcommands(manifests):
    cluster = find(manifests, "DaskCluster")
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    workers = [cluster["spec"]["worker"]] + [
        o["spec"]["worker"] for o in manifests if o["kind"] == "DaskWorkerGroup"
    ]
    for worker in workers:
        for container in worker["spec"]["containers"]:
            assert container["args"][:2] == ["dask", "worker"]
    for _, pod in _pod_specs(manifests):
        for container in pod["containers"]:
            command = container.get("command", []) + container.get("args", [])
            assert not {"dask-scheduler", "dask-worker"} & set(command), command


def test_gpu_worker_group_advertises_and_requests_one_gpu(manifests):
    cluster = find(manifests, "DaskCluster")
    group = find(manifests, "DaskWorkerGroup")
    assert group["spec"]["cluster"] == cluster["metadata"]["name"]
    container = group["spec"]["worker"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--resources") + 1] == "GPU=1"
    assert container["resources"]["requests"][GPU] == "1"
    assert container["resources"]["limits"][GPU] == "1"


def test_only_gpu_workers_get_gpus(manifests):
    cluster = find(manifests, "DaskCluster")
    for where, spec in (
        ("scheduler", cluster["spec"]["scheduler"]["spec"]),
        ("default workers", cluster["spec"]["worker"]["spec"]),
        ("runtime", find(manifests, "Deployment")["spec"]["template"]["spec"]),
    ):
        for container in spec["containers"]:
            resources = container.get("resources", {})
            for field in ("requests", "limits"):
                assert GPU not in resources.get(field, {}), f"{where} asks for a GPU"
            assert "--resources" not in container.get("args", []), where


def test_scheduler_http_api_is_enabled_for_the_operator(manifests):
    """The operator scales through the scheduler's HTTP API, which is off by default."""
    import dask.config

    scheduler = find(manifests, "DaskCluster")["spec"]["scheduler"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in scheduler["env"]}
    config = dask.config.collect_env(env)
    routes = config["distributed"]["scheduler"]["http"]["routes"]
    assert "distributed.http.scheduler.api" in routes
    assert "distributed.http.health" in routes  # the probes use /health


# -- wiring between objects ------------------------------------------------------------


def test_runtime_service_and_deployment_agree(manifests):
    deployment = find(manifests, "Deployment", "caikit-runtime")
    service = find(manifests, "Service", "caikit-runtime")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(selector, pod_labels)
    assert _selects(service["spec"]["selector"], pod_labels)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert service_ports["grpc"]["port"] == 8085 and ports["grpc"] == 8085
    assert service_ports["http"]["port"] == 8080 and ports["http"] == 8080
    for port in service_ports.values():
        assert port["targetPort"] in ports

    config = load_runtime_config()
    assert config["runtime"]["grpc"]["port"] == ports["grpc"]
    assert config["runtime"]["http"]["port"] == ports["http"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports


def test_runtime_mounts_its_configmap_where_config_files_points(manifests):
    deployment = find(manifests, "Deployment", "caikit-runtime")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_file = env["CONFIG_FILES"]
    directory, _, key = config_file.rpartition("/")
    volume = volumes[mounts[directory]]
    assert volume["configMap"]["name"] == find(manifests, "ConfigMap")["metadata"]["name"]
    assert key in find(manifests, "ConfigMap")["data"]


def test_runtime_config_points_at_the_operator_scheduler_service(manifests):
    built = _operator_objects(manifests)
    service = built["service"][0]
    assert (
        service["metadata"]["name"]
        == f"{find(manifests, 'DaskCluster')['metadata']['name']}-scheduler"
    )
    comm_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "tcp-comm")
    config = load_runtime_config()["model_management"]
    for section in ("trainers", "initializers"):
        address = config[section]["default"]["config"]["connection"]["address"]
        assert address == f"tcp://{service['metadata']['name']}:{comm_port}"
    # The Service selects the scheduler pod the operator creates.
    scheduler_pod = built["scheduler"][0]["spec"]["template"]["metadata"]["labels"]
    assert _selects(service["spec"]["selector"], scheduler_pod)


def test_network_policies_select_the_right_pods(manifests):
    built = _operator_objects(manifests)
    scheduler_pod = built["scheduler"][0]["spec"]["template"]["metadata"]["labels"]
    worker_pods = [w["spec"]["template"]["metadata"]["labels"] for w in built["workers"]]
    runtime_pod = find(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    policies = {o["metadata"]["name"]: o for o in manifests if o["kind"] == "NetworkPolicy"}

    def allowed(policy: dict, labels: dict, port: int) -> bool:
        for rule in policy["spec"]["ingress"]:
            if not any(_opens(p, port) for p in rule.get("ports", [])):
                continue
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    continue  # another namespace; not one of our pods
                if _selects(peer["podSelector"].get("matchLabels", {}), labels):
                    return True
        return False

    scheduler_policy = next(
        p
        for p in policies.values()
        if _selects(p["spec"]["podSelector"]["matchLabels"], scheduler_pod)
    )
    assert "Ingress" in scheduler_policy["spec"]["policyTypes"]
    assert allowed(scheduler_policy, runtime_pod, 8786)
    for worker in worker_pods:
        assert allowed(scheduler_policy, worker, 8786)
    assert not allowed(scheduler_policy, {"app": "something-else"}, 8786)
    assert allowed(scheduler_policy, {"app": "something-else"}, 8787)
    # Only the runtime and the workers name port 8786.
    for rule in scheduler_policy["spec"]["ingress"]:
        if any(p["port"] == 8786 for p in rule["ports"]):
            assert all(peer["podSelector"].get("matchLabels") for peer in rule["from"])

    for worker in worker_pods:
        worker_policies = [
            p
            for p in policies.values()
            if _selects(p["spec"]["podSelector"]["matchLabels"], worker)
        ]

        def allowed_here(labels: dict, port: int, policies=worker_policies) -> bool:
            return any(allowed(policy, labels, port) for policy in policies)  # additive

        container = worker["dask.org/workergroup-name"]
        for port in (8789, 8790, 8791):
            assert allowed_here(scheduler_pod, port), container
            assert allowed_here(runtime_pod, port), container
            assert not allowed_here({"app": "something-else"}, port), container
        # torch.distributed ranks (gang trainings): the ephemeral range, worker to worker only.
        for port in (32768, 45000, 60999):
            for other in worker_pods:
                assert allowed_here(other, port), (container, port)
            assert not allowed_here(runtime_pod, port), container
            assert not allowed_here(scheduler_pod, port), container
        assert not allowed_here(worker_pods[0], 32767), container


def _opens(rule_port: dict, port: int) -> bool:
    """A NetworkPolicy port entry covers ``port`` (one port, or ``port``..``endPort``)."""
    return rule_port["port"] <= port <= rule_port.get("endPort", rule_port["port"])


def test_workers_listen_on_the_ports_the_policy_opens(manifests):
    for where, pod in _pod_specs(manifests):
        if "worker" not in where.lower():
            continue
        args = pod["containers"][0]["args"]
        assert args[args.index("--worker-port") + 1] == "8789", where
        assert args[args.index("--nanny-port") + 1] == "8790", where
        env = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
        assert env.get("DASK_CAIKIT_DASK__CALL_PORT") == "8791", where  # direct model calls
        ports = {p["containerPort"] for p in pod["containers"][0]["ports"]}
        assert {8789, 8790, 8791} <= ports, where


def test_model_volume_is_shared_at_one_path(manifests):
    pvc = find(manifests, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    mount_paths = {}
    for where, pod in _pod_specs(manifests):
        if "scheduler" in where:
            continue
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        assert list(claims.values()) == [pvc["metadata"]["name"]], where
        for mount in pod["containers"][0]["volumeMounts"]:
            if mount["name"] in claims:
                mount_paths[where] = mount["mountPath"]
    assert len(mount_paths) == 3 and len(set(mount_paths.values())) == 1, mount_paths
    shared = next(iter(mount_paths.values()))
    runtime = load_runtime_config()["runtime"]
    assert runtime["local_models_dir"].startswith(shared + "/")
    assert runtime["training"]["output_dir"].startswith(shared + "/")


def test_pods_run_as_non_root_without_privilege_escalation(manifests):
    pods = list(_pod_specs(manifests))
    assert len(pods) == 4  # runtime, scheduler, default workers, GPU workers
    for where, pod in pods:
        assert pod["automountServiceAccountToken"] is False, where
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] > 0, where
        assert security["seccompProfile"]["type"] == "RuntimeDefault", where
        writable = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in writable, where  # the root filesystem is read-only
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where


def test_images_are_the_project_image(manifests):
    """Runtime and workers unpickle each other's objects: one image for all."""
    images = {c["image"] for _, pod in _pod_specs(manifests) for c in pod["containers"]}
    assert len(images) == 1, images


def test_dockerfile_matches_the_manifests():
    dockerfile = (BASE_DIR.parent / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert re.search(r'pip install "?\.\[runtime,kubernetes\]"?', dockerfile)
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert "--uid 10001" in dockerfile


def test_namespace_enforces_the_restricted_pod_security_standard(manifests):
    namespace = find(manifests, "Namespace")
    assert namespace["metadata"]["name"] == load_kustomization()["namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
