"""Getting a model's replicas placed: at load, on demand, one more, or adopted.

``start`` places a loaded model's replicas (a lazy one waits for its first call);
``load_on_demand`` loads a lazy, evicted or scaled-to-zero model for the calls
waiting on it; ``grow`` adds one replica (the autoscaler, the rest of ``replicas: N``);
``adopt`` takes over the actors another process published. Each sets up what the
scheduler announces about our actors first (``announcements``).
"""

from __future__ import annotations

import threading

from distributed import Future

from ...errors import log
from ..placement.scale_up import count_models_in_adaptive_target
from ..placement.starting import detach_handle_future
from ..replicas.replica_set import ReplicaSet
from . import announcements
from .placing import book_for, book_or_wait, place
from .releasing import close


def start(replica_set: ReplicaSet) -> None:
    """Place all replicas (in parallel) or fail, releasing whatever was placed.

    A lazy model is placed on its first call instead; an evicted one on its next.
    """
    spec, client = replica_set.spec, replica_set.client
    count_models_in_adaptive_target(client)
    announcements.watch(client)
    if spec.lazy:
        return
    booked = book_for(replica_set, spec.count).or_raise()
    try:
        place(replica_set, booked, "load")
        for _ in range(spec.count - len(booked)):  # room for the rest may come from scaling
            reason = grow(replica_set, "load")
            if reason is not None:
                log.warning(
                    "<DSK50000010W>",
                    "Only %d of %d replicas of %s fit the cluster: %s",
                    len(replica_set.routed()),
                    spec.count,
                    spec.module_id,
                    reason,
                )
                break
    except BaseException:
        close(replica_set)
        raise


def load_in_background(replica_set: ReplicaSet) -> None:
    """The set's on-demand loader: loads the model in a thread of its own."""
    threading.Thread(
        target=load_on_demand, args=(replica_set,), name="caikit-dask-load", daemon=True
    ).start()


def load_on_demand(replica_set: ReplicaSet) -> None:
    """Load a lazy or evicted model for the calls waiting on it; they get its failure."""
    spec = replica_set.spec
    log.info(
        "<DSK50000021I>",
        "%s %s from %s on demand",
        "Reloading" if replica_set.on_demand.evictions else "Loading",
        spec.module_id,
        spec.source.path,
    )
    failure = None
    reason = "reload" if replica_set.on_demand.evictions else "on_demand"
    try:
        announcements.watch(replica_set.client)
        missing = max(replica_set.count, 1) - len(replica_set.routed())
        if missing > 0:
            # Calls wait for this load: it may wait for room too, within half their timeout.
            booking = book_or_wait(replica_set, missing, spec.call_timeout / 2)
            place(replica_set, booking.or_raise(), reason)
        replica_set.scale_to(max(replica_set.count, 1))
    except BaseException as err:  # noqa: BLE001 - handed to the waiting calls
        failure = err
    if replica_set.closed:
        close(replica_set)  # replicas placed while it closed
    replica_set.on_demand.finished(failure)


def grow(replica_set: ReplicaSet, reason: str = "scale_up") -> str | None:
    """Place one more replica, on a worker the set does not use where possible.

    None when placed; else why no worker had room (nothing was booked).
    """
    booked, why, _ = book_for(replica_set, 1)
    if not booked:
        return str(why)
    place(replica_set, booked, reason)
    if replica_set.closed:
        close(replica_set)  # placed while it closed
    return None


def adopt(replica_set: ReplicaSet, futures: list[Future]) -> None:
    """Take over actors another client placed (a published model)."""
    client = replica_set.client
    who_has = client.who_has(futures)
    with client.as_current():  # Actor handles bind to the current client
        actors = [
            detach_handle_future(future.result(timeout=replica_set.spec.call_timeout))
            for future in futures
        ]
    replicas = [
        replica_set.new_replica((who_has.get(future.key) or ["unknown"])[0], future.key).started(
            client, future, actor, replica_set.spec.direct_calls, replica_set.spec.call_timeout
        )
        for future, actor in zip(futures, actors, strict=True)
    ]
    replica_set.add(replicas)
