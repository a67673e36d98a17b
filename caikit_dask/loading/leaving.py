"""Workers that leave: a model on a retiring worker moves before the worker goes.

The scheduler holds a retirement (``client.retire_workers``, adaptive scale-down,
a worker closing gracefully) until the models on the worker have moved, and
announces them on the ``RETIRING`` topic (see ``retiring_side``). Each process
holding models subscribes once per client; the owner of a leaving actor places a
replacement on another worker, routes new calls to it, and releases the old actor
after its calls in flight. Releasing it is what lets Dask's retirement proceed.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import cloudpickle
from distributed import Client

from ..errors import log
from ..formatting import seconds
from ..per_client import PerScheduler
from ..topics import subscribe
from . import retiring_side, upkeep
from .placement import release_placements
from .retiring_side import RETIRING, STAYS, MoveModelsBeforeRetiring

# The scheduler runs the plugin without importing caikit-dask.
cloudpickle.register_pickle_by_value(retiring_side)

MOVE_TIMEOUT = 120.0  # longest a retirement waits for its models to move

_owners: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def _watch(client: Client) -> bool:
    client.register_plugin(MoveModelsBeforeRetiring(MOVE_TIMEOUT))
    subscribe(client, RETIRING, _on_retiring)
    return True


_watching: PerScheduler[bool] = PerScheduler(_watch)


def own(client: Client, replica_set: Any, keys: list[str]) -> None:
    """Have retirements of the workers holding these actor keys reach ``replica_set``."""
    try:
        _watching.get(client)
    except Exception as err:  # noqa: BLE001 - the models still serve; they just cannot move
        log.warning(
            "<DSK50000016W>",
            "Workers holding %s cannot be retired gracefully: %s",
            replica_set.spec.module_id,
            err,
        )
        return
    with _lock:
        for key in keys:
            _owners[key] = replica_set


def _on_retiring(event: tuple[float, dict[str, Any]]) -> None:
    """On the client's event loop: move each of our leaving actors, in the background."""
    _, message = event
    leaving_workers = set(message.get("workers") or ())
    for worker, keys in (message.get("workers") or {}).items():
        for key in keys:
            with _lock:
                replica_set = _owners.get(key)
            if replica_set is not None:
                threading.Thread(
                    target=move,
                    args=(replica_set, worker, key, leaving_workers),
                    name="caikit-dask-move",
                    daemon=True,
                ).start()


def move(replica_set: Any, worker: str, key: str, leaving_workers: set[str]) -> None:
    """Place a replacement elsewhere, then drain and release the leaving replica."""
    spec = replica_set.spec
    client = replica_set.client
    replica = next((r for r in replica_set.live() if r.future.key == key), None)
    if replica is None or replica_set.closed:
        # Already leaving routing (closed, or being replaced): nothing to move, and the
        # retirement must not wait for it (Dask's own retirement then decides).
        _tell_stays(client, worker, key)
        return
    started = time.monotonic()
    try:
        booked, reason, _ = upkeep._book(
            replica_set,
            1,
            avoid={r.worker for r in replica_set.live()},
            exclude=leaving_workers | replica_set.lost_workers,
            client=client,
            ask_for_workers=False,  # the cluster is shrinking: use the room it keeps
        )
        if booked:
            upkeep.place(replica_set, booked)
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
    with _lock:
        _owners.pop(key, None)
    if replica_set.drain(replica):
        release_placements(client, [(worker, key)])
    log.info(
        "<DSK50000022I>",
        "Moved %s (%s) off the retiring worker %s to %s in %s",
        spec.module_id,
        spec.source.path,
        worker,
        booked[0][0],
        seconds(time.monotonic() - started),
    )


def _tell_stays(client: Client, worker: str, key: str) -> None:
    """The retirement stops waiting for this actor to move."""
    try:
        client.log_event(STAYS, {"worker": worker, "key": key})
    except Exception as err:  # noqa: BLE001 - it then waits for its timeout
        log.debug("Could not tell the scheduler %s stays: %s", key, err)
