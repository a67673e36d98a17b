"""Published models: actors reachable by name from any client of the scheduler.

An actor lives while some client holds a future for it. Publishing the actor
futures as a Dask dataset keeps them alive when the loading process goes away,
so a new process (a restarted runtime) can attach to the loaded model by name
instead of loading it again (see ``loader.attach``).
"""

from __future__ import annotations

from typing import Any

from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from distributed import Client

from .placement.booking import keep_resident
from .replicas.replica_set import ReplicaSet

PREFIX = "caikit-dask-model-"


def publish(replica_set: ReplicaSet, name: str) -> str:
    """Publish the live actors of ``replica_set`` under ``name`` (replacing any before).

    Published actors are never evicted: the dataset keeps them alive for other
    processes, so evicting them would free no memory.
    """
    spec = replica_set.spec
    live = replica_set.routed()
    keep_resident(replica_set.client, [r.key for r in live])
    replica_set.client.publish_dataset(
        override=True,
        **{
            PREFIX + name: {
                "futures": [r.future for r in live],
                "model_path": spec.source.path,
                "module_id": spec.module_id,
                "library": spec.library,
                "resources": spec.resources,
                "replicas": spec.count,
            }
        },
    )
    return name


def published(client: Client, name: str) -> dict[str, Any]:
    """The record ``publish`` wrote under ``name`` (NOT_FOUND if there is none)."""
    try:
        return client.get_dataset(PREFIX + name)
    except KeyError:
        raise CaikitCoreException(
            status_code=CaikitCoreStatusCode.NOT_FOUND,
            message=f"No published model named {name!r}; publish it with proxy.publish(name)",
        ) from None


def unpublish(client: Client, name: str) -> None:
    try:
        client.unpublish_dataset(PREFIX + name)
    except KeyError:
        raise CaikitCoreException(
            status_code=CaikitCoreStatusCode.NOT_FOUND,
            message=f"No published model named {name!r}",
        ) from None
