"""Keeping a model at ``count`` replicas: placing them, and replacing the dead ones.

A replica is replaced only on definite death (see ``health``). Replacements go
to workers the set does not use yet where possible, never to a worker it lost.
Background repairs stop when the model is closed, when the connection is closed
or lost (they resume on the next health check that reaches the scheduler), and
at interpreter exit.
"""

from __future__ import annotations

import threading
from typing import Any

from distributed import Future

from ..errors import log
from . import eviction, leaving
from .memory import MemoryNeed
from .placement import Booking, book_workers, record_loaded, release_placements
from .replicas import Replica, ReplicaSet
from .scale_up import book_on_new_workers, count_models_in_adaptive_target
from .starting import WorkerLostDuringLoad, detach_handle_future, start_actor

exiting = threading.Event()  # set at interpreter exit (see health)


def start(replica_set: ReplicaSet) -> None:
    """Place all replicas (in parallel) or fail, releasing whatever was placed.

    A lazy model is placed on its first call instead; an evicted one on its next.
    """
    spec = replica_set.spec
    replica_set.on_demand = lambda: _start_load_on_demand(replica_set)
    count_models_in_adaptive_target(replica_set.client)
    if spec.lazy:
        return
    booked = _book(replica_set, spec.count).or_raise()
    try:
        place(replica_set, booked)
        for _ in range(spec.count - len(booked)):  # room for the rest may come from scaling
            reason = grow(replica_set)
            if reason is not None:
                log.warning(
                    "<DSK50000010W>",
                    "Only %d of %d replicas of %s fit the cluster: %s",
                    len(replica_set.live()),
                    spec.count,
                    spec.module_id,
                    reason,
                )
                break
    except BaseException:
        replica_set.close()
        raise


def _book(
    replica_set: ReplicaSet,
    count: int,
    avoid: Any = (),
    exclude: Any = (),
    client: Any = None,
    ask_for_workers: bool = True,
) -> Booking:
    """Book ``count`` workers with room (resources and memory) for the set's model.

    With none, an adaptive cluster is asked for more workers first (see ``scale_up``).
    """
    spec = replica_set.spec
    client = client or replica_set.client
    need = MemoryNeed(spec.memory, spec.source.path, spec.size_on_disk, replica_set.connection)

    def book() -> Booking:
        return book_workers(
            client, spec.module_id, count, spec.resources, avoid, exclude, memory=need
        )

    if not ask_for_workers:
        return book()
    return book_on_new_workers(client, spec.module_id, book)


def _start_load_on_demand(replica_set: ReplicaSet) -> None:
    threading.Thread(
        target=load_on_demand, args=(replica_set,), name="caikit-dask-load", daemon=True
    ).start()


def load_on_demand(replica_set: ReplicaSet) -> None:
    """Load a lazy or evicted model for the calls waiting on it; they get its failure."""
    spec = replica_set.spec
    log.info(
        "<DSK50000021I>",
        "%s %s from %s on demand",
        "Reloading" if replica_set.evictions else "Loading",
        spec.module_id,
        spec.source.path,
    )
    failure = None
    try:
        missing = max(replica_set.count, 1) - len(replica_set.live())
        if missing > 0:
            place(replica_set, _book(replica_set, missing).or_raise())
    except BaseException as err:  # noqa: BLE001 - handed to the waiting calls
        failure = err
    if replica_set.closed:
        replica_set.close()  # replicas placed while it closed
    replica_set.loaded_on_demand(failure)


def grow(replica_set: ReplicaSet) -> str | None:
    """Place one more replica, on a worker the set does not use where possible.

    None when placed; else why no worker had room (nothing was booked).
    """
    booked, reason, _ = _book(
        replica_set,
        1,
        avoid={r.worker for r in replica_set.live()},
        exclude=set(replica_set.lost_workers),
    )
    if not booked:
        return str(reason)
    place(replica_set, booked)
    if replica_set.closed:
        replica_set.close()  # placed while it closed
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
    replica_set.add(
        [
            Replica(client, future, actor, (who_has.get(future.key) or ["unknown"])[0])
            for future, actor in zip(futures, actors, strict=True)
        ]
    )


def place(replica_set: ReplicaSet, booked: list[tuple[str, str]]) -> None:
    """Start an actor on each booked (worker, key), in parallel; raise the first failure.

    An actor whose worker leaves while it loads is booked again elsewhere.
    """
    results: list[Any] = [None] * len(booked)
    threads = [
        threading.Thread(target=_place_one, args=(replica_set, worker, key, results, index))
        for index, (worker, key) in enumerate(booked)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    placed = [r for r in results if isinstance(r, Replica)]
    replica_set.add(placed)
    _record(replica_set, placed)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]


def _record(replica_set: ReplicaSet, placed: list[Replica]) -> None:
    """Book what each load measured, and hear of the replicas' evictions from now on."""
    client = replica_set.client
    eviction.own(client, replica_set, [r.future.key for r in placed])
    leaving.own(client, replica_set, [r.future.key for r in placed])
    try:
        record_loaded(client, [(r.worker, r.future.key, r.size) for r in placed])
    except Exception as err:  # noqa: BLE001 - the first estimates stay booked
        log.debug("Could not record the sizes of %s: %s", replica_set.spec.module_id, err)


def _place_one(replica_set: ReplicaSet, worker: str, key: str, results: list, index: int) -> None:
    spec, client = replica_set.spec, replica_set.client
    tried: set[str] = set()
    while True:
        tried.add(worker)
        try:
            source = spec.source.for_worker(client, worker)
            future, actor = start_actor(
                client, source, worker, key, spec.resources, spec.call_timeout, spec.library
            )
            replica = Replica(client, future, actor, worker)
            replica.size = _measured(replica, spec.call_timeout)
            results[index] = replica
            return
        except WorkerLostDuringLoad as err:
            log.warning("<DSK50000014W>", "%s; loading on another worker", err)
            replica_set.lost_workers.add(worker)
            release_placements(client, [(worker, key)])
            try:
                [(worker, key)] = _book(
                    replica_set, 1, exclude=tried | replica_set.lost_workers, client=client
                ).or_raise()
            except BaseException as no_worker:  # noqa: BLE001 - re-raised by place
                results[index] = no_worker
                return
        except BaseException as err:  # noqa: BLE001 - re-raised by place
            release_placements(client, [(worker, key)])
            results[index] = err
            return


def _measured(replica: Replica, timeout: float) -> int:
    """Bytes the model's load took on its worker, as the actor measured them (0: unknown)."""
    try:
        return int(replica.actor.ping().result(timeout=min(5.0, timeout)).get("bytes") or 0)
    except Exception as err:  # noqa: BLE001 - the size on disk stays the estimate
        log.debug("Could not measure %s: %s", replica.future.key, err)
        return 0


def replace(replica_set: ReplicaSet, replica: Replica) -> None:
    """Drop a dead replica, and place a new one in the background."""
    if not replica_set.remove(replica):
        return
    replica_set.release([replica])
    start_repair(replica_set)


def _stopped(replica_set: ReplicaSet) -> bool:
    """Whether a background repair should stop: it resumes on a later health check."""
    connection = replica_set.connection
    return (
        replica_set.closed
        or exiting.is_set()
        or connection.open_client is None
        or connection.lost()
    )


def start_repair(replica_set: ReplicaSet) -> None:
    threading.Thread(
        target=repair, args=(replica_set,), name="caikit-dask-repair", daemon=True
    ).start()


def repair(replica_set: ReplicaSet) -> None:
    """Bring the set back to ``count`` replicas, avoiding workers already used."""
    if not replica_set.repairing.acquire(blocking=False):
        return
    spec = replica_set.spec
    try:
        while not _stopped(replica_set):
            missing = replica_set.wanted() - len(replica_set.live())
            if missing <= 0:
                return
            client = replica_set.connection.open_client
            try:
                booked, reason, _ = _book(
                    replica_set,
                    missing,
                    avoid={r.worker for r in replica_set.live()},
                    exclude=set(replica_set.lost_workers),
                    client=client,
                )
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
                place(replica_set, booked)
            except Exception as err:  # noqa: BLE001 - try again next period
                if _stopped(replica_set):
                    return
                log.warning("<DSK50000013W>", "Re-placing %s failed: %s", spec.module_id, err)
                replica_set.wait_closed(spec.health_check_period)
    finally:
        if replica_set.closed:
            replica_set.close()  # replicas placed while it closed
        replica_set.repairing.release()
