"""Placing replicas: booking workers for them, and starting their actors there.

``book_for`` books workers with room for a model's next replicas, away from the
workers it already uses and never on one it lost; ``place`` starts an actor on each
booked worker, in parallel, adds the started ones to routing, records what each load
measured, and hears of their evictions and retirements from then on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from typing import Any

from ...errors import log
from ..placement.booking import Booking, book_workers, record_loaded, release_placements
from ..placement.memory import MemoryNeed
from ..placement.scale_up import book_on_new_workers
from ..placement.starting import WorkerLostDuringLoad, start_actor
from ..replicas import last_calls
from ..replicas.registry import served
from ..replicas.replica import LeaveReason, Replica
from ..replicas.replica_set import ReplicaSet
from ..wire.protocol import PING


def book_for(
    replica_set: ReplicaSet,
    count: int,
    *,
    leaving: Collection[str] = (),
    ask_for_workers: bool = True,
    client: Any = None,
) -> Booking:
    """Book ``count`` workers with room (resources and memory) for the set's model.

    Workers its replicas use are taken only if no other fits; workers it lost, and
    ``leaving`` ones, never. With none, an adaptive cluster is asked for more workers
    first (see ``scale_up``), unless ``ask_for_workers`` is False.
    """
    spec = replica_set.spec
    client = client or replica_set.client
    avoid = {r.worker for r in replica_set.routed()}
    exclude = replica_set.lost_workers | set(leaving)

    def book() -> Booking:
        need = MemoryNeed(
            spec.memory,
            spec.source.path,
            spec.size_on_disk,
            last_calls.take(replica_set.connection),
            name=replica_set.metrics.model,
            module_id=spec.module_id,
        )
        return book_workers(
            client, spec.module_id, count, spec.resources, avoid, exclude, memory=need
        )

    if not ask_for_workers:
        return book()
    return book_on_new_workers(client, spec.module_id, book)


def book_or_wait(replica_set: ReplicaSet, count: int, within: float) -> Booking:
    """``book_for``; with ``eviction: lru``, a model that does not fit tries again for up
    to ``within`` seconds: the room may be held by other models' loads in progress (not
    evictable until loaded) or by evicted models the workers are still freeing."""
    deadline = time.monotonic() + within
    while True:
        booking = book_for(replica_set, count)
        if (
            booking.placed
            or not replica_set.spec.memory.evict
            or "memory" not in str(booking.reason)
            or time.monotonic() > deadline
            or replica_set.wait_closed(_BOOK_AGAIN)
        ):
            return booking


_BOOK_AGAIN = 0.25  # seconds between tries of ``book_or_wait``


def place(replica_set: ReplicaSet, booked: list[tuple[str, str]], reason: str) -> None:
    """Start an actor on each booked (worker, key), in parallel; raise the first failure.

    An actor whose worker leaves while it loads is booked again elsewhere. ``reason``
    (one of ``metrics.families.LOAD_REASONS``) labels the loads in the metrics.
    """
    started = time.monotonic()
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
    took = time.monotonic() - started
    for _ in placed:
        replica_set.metrics.loaded(reason, took)
    for _ in failures:
        replica_set.metrics.load_failed(reason)
    if failures:
        raise failures[0]


def _record(replica_set: ReplicaSet, placed: list[Replica]) -> None:
    """Book what each load measured, and have notices about these actors reach the set."""
    served.own(replica_set, [r.key for r in placed])
    try:
        record_loaded(replica_set.client, [(r.worker, r.key, r.size) for r in placed])
    except Exception as err:  # noqa: BLE001 - the first estimates stay booked
        log.debug("Could not record the sizes of %s: %s", replica_set.spec.module_id, err)


def _place_one(replica_set: ReplicaSet, worker: str, key: str, results: list, index: int) -> None:
    spec, client = replica_set.spec, replica_set.client
    tried: set[str] = set()
    while True:
        tried.add(worker)
        replica = replica_set.new_replica(worker, key)
        try:
            source = spec.source.for_worker(client, worker)
            future, actor = start_actor(
                client,
                source,
                worker,
                key,
                spec.resources,
                spec.call_timeout,
                spec.library,
                silent_within=spec.health_check_timeout,
            )
            replica.started(client, future, actor, spec.direct_calls, spec.call_timeout)
            replica.size = _measured(replica, spec.call_timeout)
            results[index] = replica
            return
        except WorkerLostDuringLoad as err:
            log.warning("<DSK50000014W>", "%s; loading on another worker", err)
            replica_set.leave_routing(replica, LeaveReason.DEAD)  # not placed there again
            release_placements(client, [(worker, key)])
            try:
                [(worker, key)] = book_for(replica_set, 1, leaving=tried, client=client).or_raise()
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
        answer = getattr(replica.actor, PING)().result(timeout=min(5.0, timeout))
        return int(answer.get("bytes") or 0)
    except Exception as err:  # noqa: BLE001 - the size on disk stays the estimate
        log.debug("Could not measure %s: %s", replica.key, err)
        return 0
