"""Hearing of evictions: the scheduler unloads a model's replica to make room.

The scheduler drops the evicted bookings in the same step that books the model
needing the room (see ``scheduler_side.reserve``), and announces them on a Dask
event topic. Each process holding models subscribes once per client; the owner
of an evicted actor takes it out of routing and releases it once its calls in
flight are done, so the worker frees the model's memory. The proxy stays valid:
its next call loads the model again (see ``ReplicaSet.acquire``).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from distributed import Client

from ..errors import log
from ..per_client import PerScheduler
from ..topics import subscribe
from .scheduler_side import EVICTIONS

_owners: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def _subscribe(client: Client) -> bool:
    subscribe(client, EVICTIONS, _on_evictions)
    return True


_subscribed: PerScheduler[bool] = PerScheduler(_subscribe)


def own(client: Client, replica_set: Any, keys: list[str]) -> None:
    """Have evictions of these actor keys reach ``replica_set``."""
    _subscribed.get(client)
    with _lock:
        for key in keys:
            _owners[key] = replica_set


def _on_evictions(event: tuple[float, dict[str, Any]]) -> None:
    """On the client's event loop: hand each evicted key to its replica set, if ours."""
    _, message = event
    for worker, key in message.get("evicted") or ():
        with _lock:
            replica_set = _owners.pop(key, None)
        if replica_set is not None and replica_set.evict(key):
            log.info(
                "<DSK50000020I>",
                "Evicted %s (%s) from %s to make room for another model; "
                "it loads again on its next call",
                replica_set.spec.module_id,
                replica_set.spec.source.path,
                worker,
            )
