"""Hearing of evictions: the scheduler unloads a model's replica to make room.

The scheduler drops the evicted bookings in the same step that books the model
needing the room (see ``scheduler.booking.reserve``), and announces them (see
``announcements``). The owner of an evicted actor takes it out of routing; it is
released once its calls in flight are done, so the worker frees the model's memory.
The proxy stays valid: its next call loads the model again (``replicas.on_demand``).
"""

from __future__ import annotations

from typing import Any

from ...errors import log
from ..replicas.registry import served
from ..replicas.replica import LeaveReason
from ..replicas.replica_set import ReplicaSet


def on_evictions(message: dict[str, Any]) -> None:
    """On the client's event loop: each evicted key of ours leaves routing."""
    for worker, key in message.get("evicted") or ():
        replica_set = served.disown(key)
        if replica_set is not None and evict(replica_set, key):
            replica_set.metrics.evicted()
            log.info(
                "<DSK50000020I>",
                "Evicted %s (%s) from %s to make room for another model; "
                "it loads again on its next call",
                replica_set.spec.module_id,
                replica_set.spec.source.path,
                worker,
            )


def evict(replica_set: ReplicaSet, key: str) -> bool:
    """The actor ``key`` was evicted (its booking is gone already): out of routing now,
    released once idle. False if it is not (or no longer) routed here."""
    replica = next((r for r in replica_set.routed() if r.key == key), None)
    return replica is not None and replica_set.leave_routing(replica, LeaveReason.EVICTED)
