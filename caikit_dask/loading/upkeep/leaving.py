"""Workers that leave: a model on a retiring worker moves before the worker goes.

The scheduler holds a retirement (``client.retire_workers``, adaptive scale-down,
a worker closing gracefully) until the models on the worker have moved, and
announces them (see ``scheduler.retiring`` and ``announcements``). The owner of a
leaving actor places a replacement on another worker, routes new calls to it, and
releases the old actor after its calls in flight. Releasing it is what lets Dask's
retirement proceed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from distributed import Client

from ...errors import log
from ...formatting import seconds
from ..replicas.registry import served
from ..replicas.replica import LeaveReason
from ..replicas.replica_set import ReplicaSet
from ..scheduler.books import MOVED, STAYS
from . import placing
from .releasing import release

MOVE_TIMEOUT = 120.0  # longest a retirement waits for its models to move


def on_retiring(message: dict[str, Any]) -> None:
    """On the client's event loop: move each of our leaving actors, in the background."""
    leaving_workers = set(message.get("workers") or ())
    for worker, keys in (message.get("workers") or {}).items():
        for key in keys:
            replica_set = served.owner(key)
            if replica_set is not None:
                threading.Thread(
                    target=move,
                    args=(replica_set, worker, key, leaving_workers),
                    name="caikit-dask-move",
                    daemon=True,
                ).start()


def move(replica_set: ReplicaSet, worker: str, key: str, leaving_workers: set[str]) -> None:
    """Place a replacement elsewhere, then drain and release the leaving replica."""
    spec = replica_set.spec
    client = replica_set.client
    replica = next((r for r in replica_set.routed() if r.key == key), None)
    if replica is None or replica_set.closed:
        # Already leaving routing (closed, or being replaced): nothing to move, and the
        # retirement must not wait for it (Dask's own retirement then decides).
        _tell_stays(client, worker, key)
        return
    started = time.monotonic()
    try:
        booked, reason, _ = placing.book_for(
            replica_set,
            1,
            leaving=leaving_workers,
            client=client,
            ask_for_workers=False,  # the cluster is shrinking: use the room it keeps
        )
        if booked:
            placing.place(replica_set, booked, "move")
    except Exception as err:  # noqa: BLE001 - the retirement then refuses the worker
        booked, reason = [], err
    if not booked:
        log.warning(
            "<DSK50000017W>",
            "Cannot move %s off the retiring worker %s: %s; the worker stays",
            spec.module_id,
            worker,
            reason,
        )
        _tell_stays(client, worker, key)
        return
    served.disown(key)
    if replica_set.leave_routing(replica, LeaveReason.MOVED):
        release(replica_set, [replica], actors=False)  # its actor goes after its last call
        replica_set.metrics.moved()
        _tell_moved(client, replica_set, worker, booked[0][0])
    log.info(
        "<DSK50000022I>",
        "Moved %s (%s) off the retiring worker %s to %s in %s",
        spec.module_id,
        spec.source.path,
        worker,
        booked[0][0],
        seconds(time.monotonic() - started),
    )


def _tell_moved(client: Client, replica_set: ReplicaSet, worker: str, to: str) -> None:
    """For the scheduler's view of recent moves (see ``scheduler_view``)."""
    try:
        message = {"model": replica_set.metrics.model, "module_id": replica_set.spec.module_id}
        client.log_event(MOVED, {**message, "from": worker, "to": to})
    except Exception as err:  # noqa: BLE001 - only the view misses it
        log.debug("Could not announce the move of %s: %s", replica_set.spec.module_id, err)


def _tell_stays(client: Client, worker: str, key: str) -> None:
    """The retirement stops waiting for this actor to move."""
    try:
        client.log_event(STAYS, {"worker": worker, "key": key})
    except Exception as err:  # noqa: BLE001 - it then waits for its timeout
        log.debug("Could not tell the scheduler %s stays: %s", key, err)
