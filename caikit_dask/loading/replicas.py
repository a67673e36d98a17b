"""A model's actors: routing, health checks and replacement after worker death.

Calls go to the live replica with the fewest outstanding calls. A periodic
health check (as Ray Serve does) compares replica workers with the scheduler's
worker list; a replica is replaced only on definite death (its worker is gone,
or the actor stops answering pings), never on a slow call. A call that failed
because its replica died is retried on another replica: inference calls are
taken to be free of side effects. Every call returns or raises within
``call_timeout``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from distributed import Client, Future
from distributed.comm.core import CommClosedError

from ..connection import DaskConnection
from ..errors import DaskBackendError, log
from .channel import ActorChannel
from .placement import (
    ModelSource,
    WorkerLostDuringLoad,
    choose_workers,
    detach_handle_future,
    forget_placement,
    start_actor,
)
from .requests import decode_outcome

_TRANSPORT_ERRORS = (OSError, CommClosedError, RuntimeError)


class Replica:
    """One actor, the channel its calls take, and what routing needs to know about it."""

    def __init__(self, client: Client, future: Future, actor: Any, worker: str):
        self.future, self.actor, self.worker = future, actor, worker
        self.channel = ActorChannel(client, worker, future.key)
        self.outstanding = 0
        self.last_used = 0
        self.alive = True
        self.pid: int | None = None

    def release(self) -> None:
        """Drop our future: the only one holding the actor (see detach_handle_future)."""
        self.alive = False
        self.actor = None
        self.channel.close()
        self.future.release()


class ReplicaSet:
    """N actors holding one model, kept at N while workers come and go."""

    def __init__(
        self,
        connection: DaskConnection,
        source: ModelSource,
        module_id: str,
        count: int,
        resources: dict[str, float],
        call_timeout: float,
        health_check_period: float,
        library: str | None = None,
        max_payload_size: int | None = None,
    ):
        self.connection, self.source, self.module_id = connection, source, module_id
        self.library = library
        self.max_payload_size = max_payload_size
        self.count, self.resources = count, dict(resources)
        self.call_timeout, self.health_check_period = call_timeout, health_check_period
        self.replicas: list[Replica] = []
        self.replacements = 0
        self._changed = threading.Condition(threading.Lock())  # not re-entered; faster
        self._closed = threading.Event()
        self._repairing = threading.Lock()
        self._calls = 0
        self._lost_workers: set[str] = set()

    @property
    def client(self) -> Client:
        """The connection's current client: a new one after the scheduler came back."""
        return self.connection.client

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Place all replicas (in parallel) or fail, releasing whatever was placed."""
        workers = choose_workers(self.client, self.count, self.resources)
        if len(workers) < self.count:
            log.warning(
                "<DSK50000010W>",
                "Only %d of %d replicas of %s fit the cluster's free resources %s",
                len(workers),
                self.count,
                self.module_id,
                self.resources,
            )
        try:
            self._place(workers)
        except BaseException:
            self.close()
            raise
        _HealthChecker.watch(self)

    def adopt(self, futures: list[Future]) -> None:
        """Take over actors another client placed (a published model), then watch them."""
        client = self.client
        who_has = client.who_has(futures)
        with client.as_current():  # Actor handles bind to the current client
            actors = [
                detach_handle_future(future.result(timeout=self.call_timeout)) for future in futures
            ]
        with self._changed:
            for future, actor in zip(futures, actors, strict=True):
                workers = who_has.get(future.key) or ["unknown"]
                self.replicas.append(Replica(client, future, actor, workers[0]))
            self._changed.notify_all()
        _HealthChecker.watch(self)

    def _place(self, workers: list[str]) -> None:
        results: list[Any] = [None] * len(workers)

        def place(index: int, worker: str) -> None:
            tried: set[str] = set()
            while True:
                tried.add(worker)
                try:
                    source = self.source.for_worker(self.client, worker)
                    future, actor = start_actor(
                        self.client,
                        source,
                        worker,
                        self.resources,
                        self.module_id,
                        self.call_timeout,
                        self.library,
                    )
                    results[index] = Replica(self.client, future, actor, worker)
                    return
                except WorkerLostDuringLoad as err:
                    log.warning("<DSK50000014W>", "%s; loading on another worker", err)
                    self._lost_workers.add(worker)
                    try:
                        [worker] = choose_workers(
                            self.client, 1, self.resources, exclude=tried | self._lost_workers
                        )
                    except BaseException as no_worker:  # noqa: BLE001 - re-raised below
                        results[index] = no_worker
                        return
                except BaseException as err:  # noqa: BLE001 - re-raised below
                    results[index] = err
                    return

        threads = [threading.Thread(target=place, args=item) for item in enumerate(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        placed = [r for r in results if isinstance(r, Replica)]
        with self._changed:
            self.replicas.extend(placed)
            self._changed.notify_all()
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    def close(self) -> None:
        """Release every actor; the workers drop the model."""
        self._closed.set()
        with self._changed:
            replicas, self.replicas = self.replicas, []
            self._changed.notify_all()
        for replica in replicas:
            with contextlib.suppress(Exception):  # the scheduler may be gone
                forget_placement(self.client, replica.worker, replica.future.key)
            replica.release()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- routing ---------------------------------------------------------------------------

    def _acquire(self, deadline: float, avoid: set[int]) -> Replica:
        with self._changed:
            while True:
                if self.closed:
                    raise DaskBackendError(
                        f"Model {self.module_id} was closed; load it again to call it"
                    )
                live = [r for r in self.replicas if r.alive and id(r) not in avoid]
                live = live or [r for r in self.replicas if r.alive]
                if live:
                    # Fewest outstanding calls; ties go to the least recently used.
                    replica = min(live, key=lambda r: (r.outstanding, r.last_used))
                    replica.outstanding += 1
                    self._calls += 1
                    replica.last_used = self._calls
                    return replica
                self.connection.raise_if_unreachable()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"No live replica of {self.module_id} within call_timeout="
                        f"{self.call_timeout:g}s: its workers died and no replacement could "
                        "be placed yet. Check the cluster's workers and resources."
                    )
                self._changed.wait(remaining)

    def _done(self, replica: Replica) -> None:
        with self._changed:
            replica.outstanding -= 1

    def call(self, method: str, request: bytes) -> Any:
        """Run a pickled request on a replica; retried elsewhere only if its replica died."""
        outcome = self._with_retry(lambda replica: replica.channel.submit(request), method)
        return decode_outcome(outcome)

    def _with_retry(self, run: Any, method: str) -> Any:
        deadline = time.monotonic() + self.call_timeout
        tried: set[int] = set()
        while True:
            replica = self._acquire(deadline, tried)
            try:
                if replica.actor is None:
                    raise CommClosedError("replica released")
                return self._result(replica, run(replica), deadline)
            except TimeoutError:
                raise TimeoutError(
                    f"{self.module_id}.{method} did not return within call_timeout="
                    f"{self.call_timeout:g}s (replica on {replica.worker})"
                ) from None
            except _TRANSPORT_ERRORS as err:
                if not self._is_dead(replica, err):
                    raise
                tried.add(id(replica))
                log.warning(
                    "<DSK50000011W>",
                    "Replica of %s on %s died during %s; retrying on another replica",
                    self.module_id,
                    replica.worker,
                    method,
                )
                self._replace(replica)
            finally:
                self._done(replica)

    def _result(self, replica: Replica, pending: Any, deadline: float) -> Any:
        """Wait for an actor call, giving up early if its replica or the scheduler is lost.

        A call to a dead worker can sit in distributed's connect retries for
        ``comm.timeouts.connect``; once the replica is replaced, retry elsewhere, and
        while the scheduler is unreachable, fail naming it.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                return pending.result(timeout=min(remaining, 0.25))
            except TimeoutError:
                if not replica.alive:
                    raise CommClosedError(f"replica on {replica.worker} was replaced") from None
                self.connection.raise_if_unreachable()

    def stream(self, method: str, request: bytes) -> Iterator[Any]:
        """Pull an output stream from a replica in growing chunks, lazily."""
        replica_actor: list[Any] = []

        def open_stream(replica: Replica) -> Any:
            actor = replica.actor  # once: a concurrent replacement sets it to None
            if actor is None:
                raise CommClosedError("replica released")
            replica_actor[:] = [actor]
            return actor.open_stream(request, 1)

        stream_id, items, done = self._with_retry(open_stream, method)
        actor = replica_actor[0]
        size = 8
        try:
            yield from items
            while not done:
                items, done = actor.next_chunk(stream_id, size).result(timeout=self.call_timeout)
                size = min(size * 2, 256)
                yield from items
        finally:
            if not done:
                try:
                    actor.close_stream(stream_id)
                except Exception as err:  # noqa: BLE001 - the replica may be gone
                    log.debug("Could not close stream %s: %s", stream_id, err)

    # -- health ----------------------------------------------------------------------------

    def _is_dead(self, replica: Replica, err: BaseException | None = None) -> bool:
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
        self.connection.raise_if_unreachable()
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        if replica.worker not in workers:
            return True
        try:
            replica.actor.ping().result(timeout=min(5.0, self.call_timeout))
        except Exception:  # noqa: BLE001 - unreachable is what we are testing for
            return True
        return False

    def _replace(self, replica: Replica) -> None:
        """Mark a dead replica, and place a new one in the background."""
        with self._changed:
            if not replica.alive:
                return
            replica.alive = False
            self.replicas = [r for r in self.replicas if r is not replica]
        self._lost_workers.add(replica.worker)  # the scheduler may still list it for a while
        with contextlib.suppress(Exception):  # the scheduler may be gone
            forget_placement(self.client, replica.worker, replica.future.key)
        with contextlib.suppress(Exception):
            replica.release()
        self.replacements += 1
        threading.Thread(target=self.repair, name="caikit-dask-repair", daemon=True).start()

    def repair(self) -> None:
        """Bring the set back to ``count`` replicas, avoiding workers already used."""
        if not self._repairing.acquire(blocking=False):
            return
        try:
            while not self.closed:
                missing = self.count - len([r for r in self.replicas if r.alive])
                if missing <= 0:
                    return
                used = {r.worker for r in self.replicas if r.alive}
                lost = set(self._lost_workers)
                try:
                    workers = choose_workers(
                        self.client, missing, self.resources, exclude=used | lost
                    )
                except Exception:  # noqa: BLE001 - no other worker: share a live one
                    try:
                        workers = choose_workers(self.client, missing, self.resources, exclude=lost)
                    except Exception as err:  # noqa: BLE001 - nowhere at all yet
                        log.warning(
                            "<DSK50000012W>", "Cannot re-place %s yet: %s", self.module_id, err
                        )
                        self._closed.wait(self.health_check_period)
                        continue
                try:
                    self._place(workers)
                except Exception as err:  # noqa: BLE001 - try again next period
                    log.warning("<DSK50000013W>", "Re-placing %s failed: %s", self.module_id, err)
                    self._closed.wait(self.health_check_period)
                if self.closed:
                    self.close()
        finally:
            self._repairing.release()

    def check(self) -> None:
        """One health check: replace replicas whose worker is gone."""
        if self.closed:
            return
        try:
            self.connection.raise_if_unreachable()
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception as err:  # noqa: BLE001 - scheduler away: nothing is definite
            log.debug("Health check of %s skipped: %s", self.module_id, err)
            return
        for replica in list(self.replicas):
            if replica.alive and replica.worker not in workers:
                self._replace(replica)
        if len([r for r in self.replicas if r.alive]) < self.count:
            threading.Thread(target=self.repair, daemon=True).start()

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "worker": r.worker,
                "key": r.future.key,
                "outstanding": r.outstanding,
                "alive": r.alive,
            }
            for r in self.replicas
        ]


class _HealthChecker:
    """One daemon thread checking every live replica set; holds them weakly."""

    _sets: weakref.WeakSet[ReplicaSet] = weakref.WeakSet()
    _thread: threading.Thread | None = None
    _lock = threading.Lock()

    @classmethod
    def watch(cls, replica_set: ReplicaSet) -> None:
        with cls._lock:
            cls._sets.add(replica_set)
            if cls._thread is None or not cls._thread.is_alive():
                cls._thread = threading.Thread(
                    target=cls._run, name="caikit-dask-health", daemon=True
                )
                cls._thread.start()

    @classmethod
    def _run(cls) -> None:
        next_due: dict[int, float] = {}
        while True:
            now = time.monotonic()
            for replica_set in list(cls._sets):
                if replica_set.closed:
                    cls._sets.discard(replica_set)
                    continue
                if next_due.get(id(replica_set), 0) <= now:
                    replica_set.check()
                    next_due[id(replica_set)] = now + replica_set.health_check_period
                del replica_set
            time.sleep(0.2)
