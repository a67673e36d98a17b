"""DaskCluster specs for the dask-kubernetes operator that work with current distributed.

Why this module exists: dask-kubernetes' own ``make_cluster_spec`` (and so
``KubeCluster(name=...)``) starts the ``dask-scheduler`` / ``dask-worker``
executables, which distributed >= 2026.6 no longer installs, and it puts the
``resources`` argument on the scheduler pod too, so asking for a GPU would park
one GPU on the scheduler. Here the spec is still built by dask-kubernetes, then
the commands become ``dask scheduler`` / ``dask worker`` and GPUs stay on workers.

``dask_kubernetes`` is imported only when a function here needs it, so
``caikit_dask`` imports without the ``kubernetes`` extra.

Configuration, as ``connection.cluster`` of a DASK trainer or initializer::

    cluster:
      class: dask_kubernetes.operator.KubeCluster
      kwargs:
        name: caikit-dask                # DaskCluster name; scheduler Service <name>-scheduler
        namespace: caikit-dask
        image: registry.example/caikit-dask:0.1.0
        n_workers: 2                     # default (CPU) worker group
        resources:                       # Kubernetes requests/limits of the default workers
          requests: {cpu: "1", memory: 4Gi}
          limits: {memory: 4Gi}
        scheduler_resources:             # optional; default: cpu/memory part of `resources`
          requests: {cpu: 500m, memory: 1Gi}
        env: {EXAMPLE: "1"}
        security_context: {runAsNonRoot: true, runAsUser: 10001}   # every container
        volumes: [{name: models, persistentVolumeClaim: {claimName: caikit-models}}]
        volume_mounts: [{name: models, mountPath: /mnt/caikit}]    # every worker
        worker_groups:                   # extra DaskWorkerGroups, created after the cluster
          gpu:
            n_workers: 1
            resources: {GPU: 1}          # Dask worker resources: --resources GPU=1
            k8s_resources: {requests: {cpu: "2", memory: 8Gi}}   # plus nvidia.com/gpu: GPU
            gpu_resource_name: nvidia.com/gpu                     # the default
      adapt: {minimum: 0, maximum: 8}    # scales the default worker group

Inside ``worker_groups`` ``resources`` means Dask worker resources (as everywhere
else in caikit-dask config), while ``k8s_resources`` holds Kubernetes requests and
limits; a ``GPU`` amount also becomes the ``nvidia.com/gpu`` request and limit.
Other KubeCluster kwargs (``namespace``, ``create_mode``, ``shutdown_on_close``,
``resource_timeout``, ``port_forward_cluster_ip``, ``quiet``...) pass through.
"""

from __future__ import annotations

import copy
import getpass
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import invalid_config
from .formatting import whole

GPU_RESOURCE = "GPU"
DEFAULT_GPU_RESOURCE_NAME = "nvidia.com/gpu"

# Executables that distributed >= 2026.6 dropped, and the ``dask`` subcommand replacing each.
_OLD_EXECUTABLES = {"dask-scheduler": ["dask", "scheduler"], "dask-worker": ["dask", "worker"]}
# Kubernetes resources that are not devices: the scheduler may keep these from the workers'
# ``resources``, and they need no limit equal to the request.
_PLAIN_RESOURCES = ("cpu", "memory", "ephemeral-storage")
# KubeCluster kwargs that only shape the generated spec (custom_cluster_spec replaces them).
_SPEC_KWARGS = (
    "name",
    "image",
    "n_workers",
    "resources",
    "env",
    "worker_command",
    "scheduler_service_type",
    "idle_timeout",
    "jupyter",
    "scheduler_resources",
    "security_context",
    "volumes",
    "volume_mounts",
    "worker_resources",
)

# Keys of one ``worker_groups`` entry (the keyword arguments of ``worker_spec``).
WORKER_GROUP_KEYS = frozenset(
    {
        "image",
        "n_workers",
        "resources",
        "k8s_resources",
        "env",
        "worker_command",
        "gpu_resource_name",
        "security_context",
        "volumes",
        "volume_mounts",
    }
)

# Cluster-wide kwargs that worker groups inherit unless they set their own.
_SHARED_GROUP_KWARGS = (
    "image",
    "env",
    "worker_command",
    "security_context",
    "volumes",
    "volume_mounts",
)


def _operator():
    """Import dask_kubernetes' operator lazily, with a hint at the extra that provides it."""
    try:
        from dask_kubernetes.operator import kubecluster
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "dask-kubernetes is not installed; install caikit-dask[kubernetes]"
        ) from err
    return kubecluster


def fix_command(args: list[str]) -> list[str]:
    """Turn a leading ``dask-scheduler``/``dask-worker`` into ``dask scheduler``/``dask worker``."""
    args = list(args or [])
    if args and args[0] in _OLD_EXECUTABLES:
        return _OLD_EXECUTABLES[args[0]] + args[1:]
    return args


def _split_command(command: str | list[str] | None, default: str) -> list[str]:
    if command is None:
        command = default
    if isinstance(command, str):
        command = command.split()
    return fix_command(list(command))


def dask_resources_args(resources: Mapping[str, float] | None) -> list[str]:
    """``--resources GPU=1 MEMORY=16e9`` for ``dask worker``; nothing for no resources."""
    if not resources:
        return []
    pairs = [f"{name}={whole(float(amount))}" for name, amount in resources.items()]
    return ["--resources", " ".join(pairs)]


def _k8s_quantity(value: Any) -> str:
    """The DaskCluster CRD types requests/limits as strings; ``1`` must be ``"1"``."""
    return str(whole(value))


def _k8s_resources(resources: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for field, values in (resources or {}).items():
        if field not in ("requests", "limits"):
            raise ValueError(
                f"Kubernetes resources have 'requests' and 'limits', not {field!r}; "
                "Dask worker resources such as GPU go into 'worker_resources' "
                "or a worker group's 'resources'"
            )
        out[field] = {str(k): _k8s_quantity(v) for k, v in (values or {}).items()}
    # Kubernetes rejects a device (extended resource) request without an equal limit.
    for key, value in out.get("requests", {}).items():
        if key not in _PLAIN_RESOURCES and not key.startswith("hugepages-"):
            out.setdefault("limits", {}).setdefault(key, value)
    return out


def _scheduler_resources(resources: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """Keep cpu/memory from the workers' resources; GPUs and other devices stay off."""
    kept = {}
    for field, values in _k8s_resources(resources).items():
        values = {k: v for k, v in values.items() if k in _PLAIN_RESOURCES}
        if values:
            kept[field] = values
    return kept


def _with_gpus(
    resources: dict[str, dict[str, str]], gpus: float, gpu_resource_name: str
) -> dict[str, dict[str, str]]:
    """Extended resources such as GPUs need equal request and limit; set both."""
    resources = copy.deepcopy(resources)
    if gpus:
        if not float(gpus).is_integer():
            raise ValueError(f"{gpu_resource_name} must be a whole number of GPUs, got {gpus}")
        for field in ("requests", "limits"):
            resources.setdefault(field, {})[gpu_resource_name] = str(int(gpus))
    return resources


def _env_list(env: Mapping[str, Any] | list[dict] | None) -> list[dict] | None:
    if env is None:
        return None
    if isinstance(env, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in env.items()]
    return [dict(item) for item in env]


def _drop_none(container: dict) -> dict:
    """make_*_spec writes ``env: None`` and ``resources: None``, which the CRD schema rejects."""
    return {k: v for k, v in container.items() if v is not None and v != {}}


def _default_name() -> str:
    """The name KubeCluster would pick (dask config ``kubernetes.name``), formatted the same way."""
    import dask.config

    _operator()  # registers the ``kubernetes`` dask config defaults
    template = dask.config.get("kubernetes.name")
    return template.format(user=getpass.getuser(), uuid=str(uuid.uuid4())[:10], **os.environ)


def _config(key: str, value: Any) -> Any:
    import dask.config

    return dask.config.get(f"kubernetes.{key}", override_with=value)


def _decorate_pod(
    pod_spec: dict,
    *,
    security_context: Mapping | None = None,
    volumes: Iterable[Mapping] | None = None,
    volume_mounts: Iterable[Mapping] | None = None,
) -> dict:
    for container in pod_spec["containers"]:
        if security_context:
            container["securityContext"] = dict(security_context)
        if volume_mounts:
            container["volumeMounts"] = [dict(m) for m in volume_mounts]
    if volumes:
        pod_spec["volumes"] = [dict(v) for v in volumes]
    return pod_spec


def worker_spec(
    *,
    image: str | None = None,
    n_workers: int = 1,
    resources: Mapping[str, float] | None = None,
    k8s_resources: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | list[dict] | None = None,
    worker_command: str | list[str] | None = None,
    gpu_resource_name: str = DEFAULT_GPU_RESOURCE_NAME,
    security_context: Mapping | None = None,
    volumes: Iterable[Mapping] | None = None,
    volume_mounts: Iterable[Mapping] | None = None,
) -> dict:
    """The ``worker`` part of a DaskCluster / DaskWorkerGroup.

    ``resources`` are Dask worker resources (``{GPU: 1}``) passed as ``--resources``;
    a ``GPU`` amount is also requested from Kubernetes as ``gpu_resource_name``.
    """
    kube = _operator()
    command = _split_command(_config("worker-command", worker_command), "dask worker")
    spec = kube.make_worker_spec(
        image=_config("image", image),
        n_workers=n_workers,
        resources=None,
        env=_env_list(env),
        worker_command=command + dask_resources_args(resources),
    )
    gpus = float((resources or {}).get(GPU_RESOURCE, 0))
    limits = _with_gpus(_k8s_resources(k8s_resources), gpus, gpu_resource_name)
    container = spec["spec"]["containers"][0]
    container["resources"] = limits
    spec["spec"]["containers"] = [_drop_none(container)]
    if gpus:
        # GPU nodes are commonly tainted so that only pods asking for GPUs land there.
        spec["spec"]["tolerations"] = [
            {"key": gpu_resource_name, "operator": "Exists", "effect": "NoSchedule"}
        ]
    _decorate_pod(
        spec["spec"],
        security_context=security_context,
        volumes=volumes,
        volume_mounts=volume_mounts,
    )
    return spec


def kube_cluster_spec(
    name: str | None = None,
    *,
    image: str | None = None,
    n_workers: int | None = None,
    resources: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | list[dict] | None = None,
    worker_command: str | list[str] | None = None,
    scheduler_service_type: str | None = None,
    idle_timeout: int | None = None,
    jupyter: bool = False,
    scheduler_resources: Mapping[str, Any] | None = None,
    worker_resources: Mapping[str, float] | None = None,
    security_context: Mapping | None = None,
    volumes: Iterable[Mapping] | None = None,
    volume_mounts: Iterable[Mapping] | None = None,
) -> dict:
    """A ``DaskCluster`` resource from KubeCluster-style kwargs, runnable on distributed>=2026.6.

    Unset kwargs take dask-kubernetes' dask config defaults (``kubernetes.image``...),
    as KubeCluster does. ``resources`` are Kubernetes requests/limits of the default
    workers; the scheduler keeps only their cpu/memory unless ``scheduler_resources``
    is given. ``worker_resources`` are Dask resources of the default worker group.
    """
    kube = _operator()
    name = name or _default_name()
    resources = _config("resources", resources)
    image = _config("image", image)
    spec = kube.make_cluster_spec(
        name=name,
        image=image,
        n_workers=_config("count.start", n_workers),
        resources=None,
        env=_env_list(_config("env", env) or None),
        worker_command=_split_command(_config("worker-command", worker_command), "dask worker"),
        scheduler_service_type=_config("scheduler-service-type", scheduler_service_type),
        idle_timeout=_config("idle-timeout", idle_timeout) or 0,
        jupyter=jupyter,
    )
    default_workers = worker_spec(
        image=image,
        n_workers=spec["spec"]["worker"]["replicas"],
        resources=worker_resources,
        k8s_resources=resources,
        env=_config("env", env) or None,
        worker_command=worker_command,
        security_context=security_context,
        volumes=volumes,
        volume_mounts=volume_mounts,
    )
    spec["spec"]["worker"] = default_workers

    scheduler = spec["spec"]["scheduler"]["spec"]
    container = scheduler["containers"][0]
    container["args"] = fix_command(container["args"])
    if scheduler_resources is not None:
        container["resources"] = _k8s_resources(scheduler_resources)
    else:
        container["resources"] = _scheduler_resources(resources)
    scheduler["containers"] = [_drop_none(container)]
    _decorate_pod(scheduler, security_context=security_context)
    return spec


def worker_group_spec(cluster_name: str, group_name: str, **kwargs: Any) -> dict:
    """A ``DaskWorkerGroup`` resource named ``<cluster>-<group>``; kwargs as ``worker_spec``."""
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskWorkerGroup",
        "metadata": {"name": f"{cluster_name}-{group_name}"},
        "spec": {"cluster": cluster_name, "worker": worker_spec(**kwargs)},
    }


def gpu_worker_group_spec(
    cluster_name: str,
    group_name: str = "gpu",
    *,
    gpus: int = 1,
    n_workers: int = 1,
    resources: Mapping[str, float] | None = None,
    **kwargs: Any,
) -> dict:
    """A GPU ``DaskWorkerGroup``: ``dask worker --resources GPU=<gpus>`` and ``nvidia.com/gpu``."""
    dask_resources = {**(resources or {}), GPU_RESOURCE: gpus}
    return worker_group_spec(
        cluster_name, group_name, n_workers=n_workers, resources=dask_resources, **kwargs
    )


def is_kube_cluster_class(cls: Any) -> bool:
    """True for dask_kubernetes.operator.KubeCluster or a subclass, without importing it."""
    return isinstance(cls, type) and any(
        klass.__name__ == "KubeCluster" and klass.__module__.startswith("dask_kubernetes.operator")
        for klass in cls.__mro__
    )


def _load_custom_spec(custom: str | dict) -> dict:
    if isinstance(custom, str):
        import yaml

        with open(custom) as f:
            custom = yaml.safe_load(f)
    custom = copy.deepcopy(dict(custom))
    scheduler = custom["spec"]["scheduler"]["spec"]["containers"][0]
    scheduler["args"] = fix_command(scheduler.get("args", []))
    for container in custom["spec"]["worker"]["spec"]["containers"]:
        container["args"] = fix_command(container.get("args", []))
    return custom


def check_worker_groups(path: str, groups: Any) -> None:
    """Refuse a ``worker_groups`` mapping that could not become DaskWorkerGroups.

    Called when the config is read, so a mistake names its key at construction
    rather than surfacing when the cluster is built.
    """
    example = "e.g. {gpu: {n_workers: 1, resources: {GPU: 1}}}"
    if groups is None:
        return
    if not isinstance(groups, Mapping):
        invalid_config(path, "expected a mapping of group name to settings", f"Give {example}.")
    for name, group in groups.items():
        where = f"{path}.{name}"
        if group is None:
            continue
        if not isinstance(group, Mapping):
            invalid_config(where, f"expected a mapping, got {type(group).__name__}", example)
        unknown = sorted(set(group) - WORKER_GROUP_KEYS)
        if unknown:
            invalid_config(
                f"{where}.{unknown[0]}",
                "unknown key",
                f"Known keys: {', '.join(sorted(WORKER_GROUP_KEYS))}.",
            )
        n_workers = group.get("n_workers", 1)
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0:
            invalid_config(f"{where}.n_workers", f"{n_workers!r} is not a count", "Use e.g. 1.")
        for key in ("image", "gpu_resource_name"):
            if group.get(key) is not None and not isinstance(group[key], str):
                invalid_config(f"{where}.{key}", "expected a string", "Fix the value's type.")
        _check_dask_resources(f"{where}.resources", group.get("resources"))
        check_k8s_resources(f"{where}.k8s_resources", group.get("k8s_resources"))


def _check_dask_resources(path: str, resources: Any) -> None:
    if resources is None:
        return
    if not isinstance(resources, Mapping):
        invalid_config(path, "expected a mapping of Dask resources", "Use e.g. {GPU: 1}.")
    for name, amount in resources.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            invalid_config(f"{path}.{name}", f"{amount!r} is not a non-negative number", "Use 1.")
    gpus = resources.get(GPU_RESOURCE, 0)
    if not float(gpus).is_integer():
        invalid_config(f"{path}.{GPU_RESOURCE}", f"{gpus} is not a whole number", "Use e.g. 1.")


def check_k8s_resources(path: str, resources: Any) -> None:
    """Kubernetes requests/limits: only ``requests`` and ``limits``, each a mapping."""
    if resources is None:
        return
    if not isinstance(resources, Mapping):
        invalid_config(path, "expected {requests: ..., limits: ...}", "Give a mapping.")
    for field, values in resources.items():
        if field not in ("requests", "limits"):
            invalid_config(
                f"{path}.{field}",
                "Kubernetes resources have only 'requests' and 'limits'",
                "Dask worker resources such as GPU go into a worker group's 'resources'.",
            )
        if values is not None and not isinstance(values, Mapping):
            invalid_config(f"{path}.{field}", "expected a mapping", "Use e.g. {cpu: '1'}.")


def build_kube_cluster(cluster_class: type, kwargs: Mapping[str, Any]) -> Any:
    """Start ``cluster_class`` (a KubeCluster) from ``connection.cluster.kwargs``.

    The DaskCluster is created from :func:`kube_cluster_spec` (or from a given
    ``custom_cluster_spec`` with its commands fixed); each ``worker_groups`` entry
    then becomes a DaskWorkerGroup. A class that is not a KubeCluster is simply
    called with the kwargs.
    """
    kwargs = dict(kwargs)
    if not is_kube_cluster_class(cluster_class):
        return cluster_class(**kwargs)
    if kwargs.get("asynchronous"):
        raise ValueError("connection.cluster.kwargs.asynchronous is not supported for KubeCluster")
    groups = dict(kwargs.pop("worker_groups", None) or {})
    spec_kwargs = {key: kwargs.pop(key) for key in _SPEC_KWARGS if key in kwargs}
    custom = kwargs.pop("custom_cluster_spec", None)
    spec = _load_custom_spec(custom) if custom is not None else kube_cluster_spec(**spec_kwargs)
    cluster_name = spec["metadata"]["name"]
    shared = {key: spec_kwargs[key] for key in _SHARED_GROUP_KWARGS if key in spec_kwargs}
    shared.setdefault("image", spec["spec"]["worker"]["spec"]["containers"][0].get("image"))
    group_specs = {}
    check_worker_groups("connection.cluster.kwargs.worker_groups", groups)
    for group_name, group in groups.items():
        group = dict(group or {})
        group.setdefault("k8s_resources", spec_kwargs.get("resources"))
        group_specs[group_name] = worker_group_spec(cluster_name, group_name, **{**shared, **group})

    cluster = cluster_class(custom_cluster_spec=spec, **kwargs)
    try:
        for group_name, group_spec in group_specs.items():
            cluster.add_worker_group(group_name, custom_spec=group_spec["spec"]["worker"])
    except BaseException:
        cluster.close()
        raise
    return cluster
