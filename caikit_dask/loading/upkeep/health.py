"""Telling a dead replica from a slow one, and checking every model periodically.

A replica is dead only definitely: its worker left the scheduler, or its actor
has not answered a ping for ``health_check_timeout`` (a frozen worker stays listed
for minutes, see ``wire.liveness``); never because a call is slow. One daemon thread checks
every loaded model (as Ray Serve does), asking each connection's scheduler for
its workers once per round, however many models it serves. While a connection
has lost its scheduler, the checks wait quietly (the connection logs the loss
once); after the connection is closed, and at interpreter exit, they stop.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import Any

from ... import cluster_state
from ...connection import DaskConnection
from ...errors import log
from ...per_client import PerScheduler
from ..placement.booking import push_last_calls
from ..replicas import last_calls
from ..replicas.registry import served
from ..replicas.replica import Replica
from ..replicas.replica_set import ReplicaSet
from ..wire.liveness import actor_ping, liveness
from ..wire.protocol import PING
from . import memory_pressure
from .exiting import exiting
from .releasing import close
from .repairs import replace, replace_silent, start_repair, woken

_ROUND = 0.2  # seconds between looks at which models are due
_ASK_WITHIN = 5.0  # seconds a round waits for the scheduler's worker list


def is_dead(replica_set: ReplicaSet, replica: Replica, err: BaseException | None = None) -> bool:
    """Definite death: the worker left the scheduler or the actor can't be reached."""
    if not replica.alive or replica.actor is None:
        return True
    message = str(err).lower()
    if (
        isinstance(err, RuntimeError)
        and not isinstance(err, OSError)
        and "lost" not in message
        and "actor" not in message
    ):
        return False
    replica_set.connection.raise_if_unreachable()
    workers = cluster_state.workers(replica_set.client)
    if replica.worker not in workers:
        return True
    try:
        spec = replica_set.spec
        getattr(replica.handle(), PING)().result(
            timeout=min(spec.health_check_timeout, spec.call_timeout)
        )
    except Exception:  # noqa: BLE001 - unreachable is what we are testing for
        return True
    return False


def check(replica_set: ReplicaSet, workers: Any) -> None:
    """One health check against the scheduler's current workers: replace the gone ones,
    and those whose actor has not answered a ping within ``health_check_timeout``."""
    client = replica_set.connection.open_client
    for replica in replica_set.routed():
        if replica.worker not in workers:
            replace(replica_set, replica)
        elif client is not None:
            ping = actor_ping(client, replica.worker, replica.key, PING)
            silent = liveness.silence(client, replica.worker, ping)
            if silent > replica_set.spec.health_check_timeout:
                replace_silent(replica_set, replica, silent)
    for worker in woken(replica_set, workers, client):
        replica_set.regain(worker)
    if len(replica_set.routed()) < replica_set.wanted:
        start_repair(replica_set)


class HealthChecker:
    """One daemon thread checking every model the registry serves."""

    _thread: threading.Thread | None = None
    _lock = threading.Lock()

    @classmethod
    def ensure_running(cls) -> None:
        with cls._lock:
            if cls._thread is None or not cls._thread.is_alive():
                cls._thread = threading.Thread(
                    target=cls._run, name="caikit-dask-health", daemon=True
                )
                cls._thread.start()

    @classmethod
    def _run(cls) -> None:
        next_due: weakref.WeakKeyDictionary[ReplicaSet, float] = weakref.WeakKeyDictionary()
        while not exiting.wait(_ROUND):
            now = time.monotonic()
            due: dict[DaskConnection, list[ReplicaSet]] = {}
            for replica_set in served.served():
                if next_due.get(replica_set, 0) <= now:
                    next_due[replica_set] = now + replica_set.spec.health_check_period
                    due.setdefault(replica_set.connection, []).append(replica_set)
            for connection, replica_sets in due.items():
                workers = _workers_of(connection)
                if workers is not None:
                    _push_last_calls(connection)
                    client = connection.open_client
                    if client is not None:
                        memory_pressure.relieve(client)
                for replica_set in replica_sets:
                    if workers is not None and not replica_set.closed:
                        check(replica_set, workers)
            del due

    @classmethod
    def stop(cls) -> None:
        """At interpreter exit, while the clients still run: stop checking and repairing,
        and release the models still loaded (without waiting on a lost scheduler)."""
        exiting.set()
        for replica_set in served.served():
            try:
                close(replica_set)
            except Exception as err:  # noqa: BLE001 - the cluster may be gone
                log.debug("Could not release %s at exit: %s", replica_set.spec.module_id, err)


def _push_last_calls(connection: DaskConnection) -> None:
    """Tell the scheduler which models were called since the last round (for eviction)."""
    stamps = last_calls.take(connection)
    client = connection.open_client
    if stamps and client is not None:
        try:
            push_last_calls(client, stamps)
        except Exception as err:  # noqa: BLE001 - scheduler away: next round
            log.debug("Could not report last calls: %s", err)


_scheduler_ids: weakref.WeakKeyDictionary[DaskConnection, str] = weakref.WeakKeyDictionary()


def _workers_of(connection: DaskConnection) -> Any:
    """The scheduler's workers, or None when there is nothing definite to check against."""
    client = connection.open_client  # never reopened from here: closed means closed
    if client is None or connection.lost():
        return None
    try:
        # Bounded: a scheduler that just went away must not hold up every other check.
        identity = client.sync(
            client.scheduler.identity, n_workers=-1, callback_timeout=_ASK_WITHIN
        )
    except Exception as err:  # noqa: BLE001 - scheduler away: nothing is definite
        log.debug("Health check skipped: %s", err)
        return None
    scheduler_id, known = identity.get("id"), _scheduler_ids.get(connection)
    if known is None or scheduler_id == known or _renew_scheduler_side(client):
        _scheduler_ids[connection] = scheduler_id
    return identity["workers"]


def _renew_scheduler_side(client: Any) -> bool:
    """A new scheduler answers at the old address: what our models keep on the scheduler
    (the plugins for retirements and adaptive scaling, the topic subscriptions) lived on
    the old one, so set it up again. False if that failed (the next round tries again)."""
    log.info("<DSK50000029I>", "A new scheduler answers at %s", client.scheduler.address)
    try:
        PerScheduler.renew_all(client)
    except Exception as err:  # noqa: BLE001 - the models serve; the next round retries
        log.warning("<DSK50000030W>", "Could not set up the new scheduler yet: %s", err)
        return False
    return True


# Registered after distributed's own exit hooks, so it runs before they close the clients.
atexit.register(HealthChecker.stop)
