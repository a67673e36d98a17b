"""A model's actors and the bookkeeping every call goes through.

``ReplicaSet`` is the state shared by the jobs around it, each in its own module:
``upkeep`` places replicas and keeps them at ``count``, ``routing`` picks the
replica for a call (taken here, under the set's lock), ``calls`` and ``streams``
run calls with retry, ``health`` tells a dead replica from a slow one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future

from ..connection import DaskConnection
from ..errors import DaskBackendError, error
from ..formatting import seconds
from .backpressure import QueueLimit
from .channel import ActorChannel
from .memory import MemoryPolicy
from .placement import release_placements
from .routing import choose_replica
from .source import ModelSource


@dataclass(frozen=True)
class ReplicaSpec:
    """What a model's replicas are: built by the loader from the backend's settings."""

    module_id: str
    source: ModelSource
    library: str | None  # imported on the workers before loading (None: sent by value)
    count: int
    resources: dict[str, float]
    call_timeout: float
    health_check_period: float
    max_payload_size: int | None
    max_queued_calls: int | None = None  # None: no limit (see ``backpressure``)
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    size_on_disk: int = 0  # the first estimate of the model's memory (see ``memory``)
    lazy: bool = False  # load on the first call rather than at load()


class Replica:
    """One actor, the channel its calls take, and what routing needs to know about it."""

    def __init__(self, client: Client, future: Future, actor: Any, worker: str):
        self.future, self.actor, self.worker = future, actor, worker
        self.channel = ActorChannel(client, worker, future.key)
        self.outstanding = 0
        self.last_used = 0
        self.stamped = 0  # last_used when last reported to the scheduler (see memory)
        self.alive = True
        self.evicted = False  # out of routing (evicted or scaled down): released once idle
        self.size = 0  # bytes its load measured on the worker (0: not measured)

    def release(self) -> None:
        """Drop our future: the only one holding the actor (see detach_handle_future)."""
        self.alive = False
        self.actor = None
        self.channel.close()
        self.future.release()


class ReplicaSet:
    """N actors holding one model: who they are, and which is free for the next call."""

    def __init__(self, connection: DaskConnection, spec: ReplicaSpec):
        self.connection, self.spec = connection, spec
        self.replicas: list[Replica] = []
        self.count = spec.count  # replicas to keep; the autoscaler moves it (see autoscaler)
        self.lost_workers: set[str] = set()  # the scheduler may still list them for a while
        self.repairing = threading.Lock()  # one repair at a time
        self._changed = threading.Condition(threading.Lock())  # not re-entered; faster
        self._closed = threading.Event()
        self._calls = 0
        self._outstanding = 0  # calls on replicas, of all replicas (see ``backpressure``)
        self._waiting = 0  # calls waiting for a live replica
        limit = spec.max_queued_calls
        self._queue_limit = None if limit is None else QueueLimit(spec.module_id, limit)
        # Loading on demand (lazy, or after an eviction): see ``acquire`` and ``upkeep``.
        self.unloaded = spec.lazy  # the next call loads the model
        self.on_demand: Callable[[], None] | None = None  # starts that load
        self.evictions = 0  # replicas evicted and not yet loaded again
        self._loading = False
        self._load_attempts = 0
        self._load_error: BaseException | None = None

    @property
    def client(self) -> Client:
        """The connection's current client: a new one after the scheduler came back."""
        return self.connection.client

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def wait_closed(self, timeout: float) -> bool:
        return self._closed.wait(timeout)

    def raise_if_closed(self) -> None:
        """Calls to a closed model fail the same way, whenever they notice."""
        if self._closed.is_set():
            error(
                "<DSK60000001E>",
                DaskBackendError(
                    f"The model {self.spec.module_id} from {self.spec.source.path} was closed; "
                    "load the model again to call it"
                ),
            )

    # -- routing bookkeeping -------------------------------------------------------------

    def acquire(self, deadline: float, tried: set[int]) -> Replica:
        """The replica for a call (see ``routing``), counted as busy until ``done``.

        ``tried`` holds ``id()`` of replicas this call already failed on. Waits for a
        replacement while no replica is alive, until ``deadline``. A new call (no
        ``tried``) past ``max_queued_calls`` raises ``ModelOverloaded`` at once.
        """
        attempt = None  # the on-demand load this call waits for
        with self._changed:
            if self._queue_limit is not None and not tried:
                self.raise_if_closed()  # closed, not overloaded
                self._queue_limit.admit(self._outstanding + self._waiting, len(self.replicas))
            while True:
                self.raise_if_closed()
                replicas = self.replicas
                skip = [i for i, r in enumerate(replicas) if id(r) in tried] if tried else ()
                index = choose_replica(replicas, skip)
                if index is not None:
                    replica = replicas[index]
                    replica.outstanding += 1
                    self._outstanding += 1
                    self._calls += 1
                    replica.last_used = self._calls
                    return replica
                self.connection.raise_if_unreachable()
                if self.unloaded and self.on_demand is not None:
                    attempt = self._load_on_demand(attempt)
                remaining = deadline - time.monotonic()
                if remaining <= 0 and self.unloaded:
                    raise TimeoutError(
                        f"{self.spec.module_id} from {self.spec.source.path} was not loaded "
                        f"within call_timeout={seconds(self.spec.call_timeout)} (it loads on "
                        "demand: lazy, or evicted); raise call_timeout for slow loads."
                    )
                if remaining <= 0:
                    raise TimeoutError(
                        f"No live replica of {self.spec.module_id} within call_timeout="
                        f"{seconds(self.spec.call_timeout)}: its workers died and no replacement "
                        "could be placed yet. Check the cluster's workers and resources."
                    )
                self._waiting += 1
                try:
                    self._changed.wait(remaining)
                finally:
                    self._waiting -= 1

    def done(self, replica: Replica) -> None:
        with self._changed:
            replica.outstanding -= 1
            self._outstanding -= 1
            if not replica.evicted or replica.outstanding:
                return
        replica.release()  # evicted while this call ran: its last call is done

    # -- loading on demand ---------------------------------------------------------------

    def _load_on_demand(self, attempt: int | None) -> int:
        """Start the model's load unless one runs; raise the failure of the one awaited.

        Under the lock. Returns the attempt this call waits for.
        """
        if self._loading:
            return self._load_attempts if attempt is None else attempt
        if attempt is not None and self._load_attempts > attempt and self._load_error:
            raise self._load_error
        self._loading = True
        self.on_demand()
        return self._load_attempts

    def loaded_on_demand(self, failure: BaseException | None) -> None:
        """The on-demand load ended: wake the calls waiting for it."""
        with self._changed:
            self._loading = False
            self._load_attempts += 1
            self._load_error = failure
            if failure is None:
                self.count = max(self.count, 1)
                self.unloaded = False
                self.evictions = 0
            self._changed.notify_all()

    def evict(self, key: str) -> bool:
        """The scheduler evicted this actor: out of routing now, released once idle.

        Its booking is already gone. False if the replica is not (or no longer) ours.
        """
        with self._changed:
            replica = next((r for r in self.replicas if r.future.key == key), None)
            if replica is None or not replica.alive:
                return False
            self.evictions += 1
            idle = self._leave_routing(replica, unload_if_last=True)
        if idle:
            replica.release()
        return True

    def drain(self, replica: Replica) -> bool:
        """Out of routing now, released after its last call in flight (its worker leaves).

        False if the replica is not (or no longer) routed to.
        """
        with self._changed:
            if not replica.alive:
                return False
            idle = self._leave_routing(replica, unload_if_last=False)  # replaced already
        if idle:
            replica.release()
        return True

    def wanted(self) -> int:
        """Replicas to keep placed: ``count`` less those evicted (they load on demand)."""
        return 0 if self.unloaded else self.count - self.evictions

    # -- membership ----------------------------------------------------------------------

    def add(self, replicas: list[Replica]) -> None:
        with self._changed:
            self.replicas.extend(replicas)
            self._changed.notify_all()

    def remove(self, replica: Replica) -> bool:
        """Take a dead replica out of routing; False if it already was."""
        with self._changed:
            if not replica.alive:
                return False
            replica.alive = False
            self.replicas = [r for r in self.replicas if r is not replica]
        self.lost_workers.add(replica.worker)
        return True

    def retire(self, replica: Replica) -> bool:
        """Scale down: out of routing now, released by ``done`` once its calls finished.

        True if it is idle already (the caller releases it). The last replica of a
        set scaled to zero leaves the model to load on its next call.
        """
        with self._changed:
            return self._leave_routing(replica, unload_if_last=True)

    def _leave_routing(self, replica: Replica, unload_if_last: bool) -> bool:
        """Under the lock: no new call goes to ``replica``; ``done`` releases it after its
        last call in flight. True if it is idle already. With ``unload_if_last``, a set
        left with no replica loads the model on its next call."""
        replica.alive = False
        replica.evicted = True
        self.replicas = [r for r in self.replicas if r is not replica]
        if unload_if_last and not self.replicas:
            self.unloaded = True
        self._changed.notify_all()
        return replica.outstanding == 0

    def load(self) -> tuple[int, int]:
        """(calls in flight on replicas, calls started so far): the autoscaler's sample."""
        return self._outstanding, self._calls

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def close(self) -> None:
        """Release every actor and its placement; the workers drop the model.

        The placements are released only over a connected client: a closed
        connection is not reopened for it, and a scheduler that lost us is not
        waited for.
        """
        self._closed.set()
        with self._changed:
            replicas, self.replicas = self.replicas, []
            self._changed.notify_all()
        self.release(replicas)

    def release(self, replicas: list[Replica]) -> None:
        """Release replicas that are out of routing, and their placements."""
        client = self.connection.open_client
        if client is not None and client.status == "running":
            release_placements(client, [(r.worker, r.future.key) for r in replicas])
        for replica in replicas:
            with contextlib.suppress(Exception):  # the client may be closing
                replica.release()

    def describe(self) -> list[dict[str, Any]]:
        """Each resident replica; then one entry per replica evicted or not loaded yet."""
        resident = [
            {
                "worker": r.worker,
                "key": r.future.key,
                "outstanding": r.outstanding,
                "alive": r.alive,
                "state": "resident",
                "bytes": r.size,
            }
            for r in self.replicas
        ]
        missing = max(self.count, self.unloaded) - len(resident)  # scaled to 0: one entry
        if self.evictions and missing > 0:
            state, missing = "evicted", min(self.evictions, missing)
        elif self.unloaded and missing > 0:
            state = "not loaded (lazy)"
        else:
            return resident
        return resident + [
            {"worker": None, "key": None, "outstanding": 0, "alive": False, "state": state}
            for _ in range(missing)
        ]
