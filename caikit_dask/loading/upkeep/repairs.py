"""Replacing dead replicas: keeping a model at its wanted count in the background.

A replica is replaced only on definite death (see ``health``). Replacements go to
workers the set does not use yet where possible, never to a worker it lost. One
repair runs at a time per model (this module's own state). Background repairs stop
when the model is closed, when the connection is closed or lost (they resume on the
next health check that reaches the scheduler), and at interpreter exit.
"""

from __future__ import annotations

import threading
import weakref

from ...errors import log
from ..placement.booking import release_placements
from ..replicas.replica import LeaveReason, Replica
from ..replicas.replica_set import ReplicaSet
from . import announcements
from .exiting import exiting
from .placing import book_for, place
from .releasing import close, release

_lock = threading.Lock()
_repairing: weakref.WeakSet[ReplicaSet] = weakref.WeakSet()  # sets with a repair running


def replace(replica_set: ReplicaSet, replica: Replica) -> None:
    """Drop a dead replica (its calls in flight retry elsewhere), and place a new one in
    the background."""
    if not replica_set.leave_routing(replica, LeaveReason.DEAD):
        return
    release(replica_set, [replica])
    start_repair(replica_set)


def start_repair(replica_set: ReplicaSet) -> None:
    threading.Thread(
        target=repair, args=(replica_set,), name="caikit-dask-repair", daemon=True
    ).start()


def _stopped(replica_set: ReplicaSet) -> bool:
    """Whether a background repair should stop: it resumes on a later health check."""
    connection = replica_set.connection
    return (
        replica_set.closed
        or exiting.is_set()
        or connection.open_client is None
        or connection.lost()
    )


def repair(replica_set: ReplicaSet) -> None:
    """Bring the set back to its wanted replicas, avoiding workers already used."""
    with _lock:
        if replica_set in _repairing:
            return
        _repairing.add(replica_set)
    spec = replica_set.spec
    try:
        while not _stopped(replica_set):
            missing = replica_set.wanted - len(replica_set.routed())
            if missing <= 0:
                return
            client = replica_set.connection.open_client
            try:
                announcements.watch(client)
                booked, reason, _ = book_for(replica_set, missing, client=client)
            except Exception as err:  # noqa: BLE001 - the scheduler went away meanwhile
                booked, reason = [], err
            if _stopped(replica_set):
                release_placements(client, booked)
                return
            if not booked:
                log.warning("<DSK50000012W>", "Cannot re-place %s yet: %s", spec.module_id, reason)
                replica_set.wait_closed(spec.health_check_period)
                continue
            try:
                place(replica_set, booked, "repair")
            except Exception as err:  # noqa: BLE001 - try again next period
                if _stopped(replica_set):
                    return
                log.warning("<DSK50000013W>", "Re-placing %s failed: %s", spec.module_id, err)
                replica_set.wait_closed(spec.health_check_period)
    finally:
        if replica_set.closed:
            close(replica_set)  # replicas placed while it closed
        with _lock:
            _repairing.discard(replica_set)
