"""Loading a model into actors, or attaching to one published by another process.

The one place a ``ReplicaSet`` is built: from the backend's settings and
connection, handed in explicitly (caikit adapter -> backend -> loader -> Dask),
the same way for a load and for an attach.
"""

from __future__ import annotations

from typing import Any

from caikit.core.modules import ModuleBase
from caikit.core.registries import module_registry

from ..config import BackendConfig
from ..connection import DaskConnection
from ..errors import error
from ..local_backend import resolve_model_config
from ..metrics import served as _exported  # noqa: F401 - the scrape-time gauges
from ..metrics.model_calls import ModelMetrics
from ..resources import submit_options
from .placement.memory import MemoryPolicy, size_on_disk
from .placement.source import ModelSource
from .proxy import DaskModelProxy, proxy_class_for
from .publishing import published
from .replicas.registry import served
from .replicas.replica_set import ReplicaSet
from .replicas.spec import ReplicaSpec
from .upkeep import autoscaler, lifecycle
from .upkeep.health import HealthChecker


def load(
    settings: BackendConfig, connection: DaskConnection, model_path: Any
) -> DaskModelProxy | None:
    """Load ``model_path`` into ``settings.replicas`` actors; None if no module matches it."""
    from ..training.by_value import ensure_registered_on_workers, is_by_value

    config = resolve_model_config(model_path)
    path = getattr(config, "model_path", None) or str(model_path)
    module_class = module_registry().get(config.module_id)
    if module_class is None:
        return None
    source = ModelSource(path)  # first: a small model is read now (see ``placement.source``)
    autoscaling = settings.autoscaling
    ensure_registered_on_workers(connection.client, module_class)
    proxy_class = proxy_class_for(module_class)
    replica_set = _replica_set(
        settings,
        connection,
        proxy_class,
        source,
        library=None if is_by_value(module_class) else module_class.__module__,
        count=autoscaling.initial_replicas if autoscaling else settings.replicas,
        resources=submit_options(settings.resources).get("resources", {}),
        load_on_demand=lifecycle.load_in_background,
    )
    lifecycle.start(replica_set)
    _serve(replica_set)
    if autoscaling:
        autoscaler.watch(replica_set, autoscaling)
    return proxy_class(replica_set)


def attach(settings: BackendConfig, connection: DaskConnection, name: str) -> DaskModelProxy:
    """A proxy on the actors published under ``name`` (NOT_FOUND if there are none).

    The replicas are as the publisher loaded them; calls follow this backend's settings.
    """
    record = published(connection.client, name)
    proxy_class = proxy_class_for(_module_class_for(record["module_id"]))
    replica_set = _replica_set(
        settings,
        connection,
        proxy_class,
        ModelSource(record["model_path"]),
        library=record["library"],
        count=record["replicas"],
        resources=record["resources"],
    )
    lifecycle.adopt(replica_set, record["futures"])
    _serve(replica_set)
    return proxy_class(replica_set)


def _replica_set(
    settings: BackendConfig,
    connection: DaskConnection,
    proxy_class: type[DaskModelProxy],
    source: ModelSource,
    *,
    library: str | None,
    count: int,
    resources: dict[str, float],
    load_on_demand: Any = None,
) -> ReplicaSet:
    """A lazy model needs ``load_on_demand`` (an attached one loads nothing itself); its
    metrics are bound here, for every task method the proxy forwards."""
    path = source.path
    spec = ReplicaSpec(
        module_id=proxy_class.MODULE_ID,
        source=source,
        library=library,
        count=count,
        resources=dict(resources),
        call_timeout=settings.call_timeout,
        health_check_period=settings.health_check_period,
        health_check_timeout=settings.health_check_timeout,
        max_payload_size=settings.max_payload_size,
        max_queued_calls=settings.max_queued_calls,
        memory=MemoryPolicy.from_settings(settings),
        size_on_disk=size_on_disk(path),
        lazy=settings.lazy and load_on_demand is not None,
        direct_calls=settings.direct_calls == "auto",
    )
    metrics = ModelMetrics.for_path(path, proxy_class.forwarded_methods)
    return ReplicaSet(connection, spec, load_on_demand, metrics)


def _serve(replica_set: ReplicaSet) -> None:
    """Into the registry of what this process serves; the health check watches it."""
    served.serve(replica_set)
    HealthChecker.ensure_running()


def _module_class_for(module_id: str) -> type[ModuleBase]:
    """The registered module class for a published model, or a clear error."""
    module_class = module_registry().get(module_id)
    error.value_check(
        "<DSK60000003E>",
        module_class is not None,
        "No module with MODULE_ID {} is registered in this process: import its library first",
        module_id,
    )
    return module_class
