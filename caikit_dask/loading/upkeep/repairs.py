"""Replacing dead replicas: keeping a model at its wanted count in the background.

A replica is replaced only on definite death (see ``health``). Replacements go to
workers the set does not use yet where possible, never to a worker it lost. One
repair runs at a time per model (this module's own state). Background repairs stop
when the model is closed, when the connection is closed or lost (they resume on the
next health check that reaches the scheduler), and at interpreter exit.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Collection
from typing import Any

from ...errors import log
from ...formatting import seconds
from ..placement.booking import release_placements
from ..replicas.replica import LeaveReason, Replica, ReplicaState
from ..replicas.replica_set import ReplicaSet
from ..wire.liveness import liveness
from . import announcements
from .exiting import exiting
from .placing import book_for, place
from .releasing import close, release

_lock = threading.Lock()
_repairing: weakref.WeakSet[ReplicaSet] = weakref.WeakSet()  # sets with a repair running
# Per set, the workers whose replicas were replaced as dead, and when.
_silenced: weakref.WeakKeyDictionary[ReplicaSet, dict[str, float]] = weakref.WeakKeyDictionary()


def replace(
    replica_set: ReplicaSet, replica: Replica, reason: LeaveReason = LeaveReason.DEAD
) -> None:
    """Drop a dead replica (its calls in flight retry elsewhere), and place a new one in
    the background."""
    if not replica_set.leave_routing(replica, reason):
        return
    with _lock:  # lost for now: placeable again once it answers (see ``woken``)
        _silenced.setdefault(replica_set, {})[replica.worker] = time.monotonic()
    release(replica_set, [replica])
    start_repair(replica_set)


def replace_silent(replica_set: ReplicaSet, replica: Replica, silent: float) -> None:
    """Replace a replica whose worker is still listed but has not answered a ping for
    ``silent`` seconds (frozen): its actor and bookings are released now, and the
    worker drops the actor when it wakes up (the scheduler's message waits for it)."""
    if replica.state is not ReplicaState.ROUTED:
        return
    log.warning(
        "<DSK50000031W>",
        "Replica %s of %s on %s has not answered a health check for %s "
        "(health_check_timeout=%s) although the scheduler still lists its worker; "
        "replacing it on another worker",
        replica.key,
        replica_set.spec.module_id,
        replica.worker,
        seconds(round(silent, 1)),
        seconds(replica_set.spec.health_check_timeout),
    )
    replace(replica_set, replica, LeaveReason.UNRESPONSIVE)


def woken(replica_set: ReplicaSet, workers: Collection[str], client: Any) -> list[str]:
    """Workers the set lost that the scheduler still lists and that answer a ping since
    (they were frozen, or a call to them failed): placeable from now on."""
    with _lock:
        silenced = dict(_silenced.get(replica_set) or {})
    for worker in silenced:
        if worker in workers and client is not None:
            liveness.silence(client, worker)  # one ping in flight: answered once it wakes
    with _lock:
        silenced = _silenced.get(replica_set) or {}
        back = [w for w, t in silenced.items() if w in workers and liveness.heard_since(w, t)]
        gone = [w for w in silenced if w not in workers]
        for worker in back + gone:
            del silenced[worker]
    for worker in back:
        log.info(
            "<DSK50000032I>",
            "Worker %s answers again; %s may place replicas there again",
            worker,
            replica_set.spec.module_id,
        )
    return back


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
