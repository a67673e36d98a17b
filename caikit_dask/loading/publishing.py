"""Published models: actors reachable by name from any client of the scheduler.

An actor lives while some client holds a future for it. Publishing the actor
futures as a Dask dataset keeps them alive when the loading process goes away,
so a new process (a restarted runtime) can attach to the loaded model by name
instead of loading it again.
"""

from __future__ import annotations

from typing import Any

from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from distributed import Client

from .placement import ModelSource
from .replicas import ReplicaSet

PREFIX = "caikit-dask-model-"


def publish(proxy: Any, name: str) -> str:
    replicas = proxy._replicas
    replicas.client.publish_dataset(
        override=True,
        **{
            PREFIX + name: {
                "futures": [r.future for r in replicas.replicas if r.alive],
                "model_path": proxy.model_path,
                "module_id": proxy.MODULE_ID,
                "library": replicas.library,
                "resources": replicas.resources,
                "replicas": replicas.count,
            }
        },
    )
    return name


def unpublish(client: Client, name: str) -> None:
    try:
        client.unpublish_dataset(PREFIX + name)
    except KeyError:
        raise CaikitCoreException(
            status_code=CaikitCoreStatusCode.NOT_FOUND,
            message=f"No published model named {name!r}",
        ) from None


def attach(backend: Any, name: str) -> Any:
    """A proxy on the actors published under ``name`` (NOT_FOUND if there are none)."""
    from .proxy import module_class_for, proxy_class_for

    client = backend.client
    try:
        record = client.get_dataset(PREFIX + name)
    except KeyError:
        raise CaikitCoreException(
            status_code=CaikitCoreStatusCode.NOT_FOUND,
            message=f"No published model named {name!r}; publish it with proxy.publish(name)",
        ) from None
    module_class = module_class_for(record["module_id"])
    settings = backend.settings
    replicas = ReplicaSet(
        backend.connection,
        ModelSource(record["model_path"]),
        record["module_id"],
        record["replicas"],
        record["resources"],
        settings.call_timeout,
        settings.health_check_period,
        library=record["library"],
    )
    replicas.adopt(record["futures"])
    return proxy_class_for(module_class)(replicas, record["model_path"])
