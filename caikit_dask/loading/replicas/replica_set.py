"""A model's replicas, and the bookkeeping every call goes through.

``ReplicaSet`` admits a call (``backpressure``), routes it (``routing``), counts it
until ``done``, and keeps the set's membership: replicas enter routing with ``add``
and leave it with ``leave_routing``, the one transition for every reason (see
``replica``). Only the set writes its own state; placing, repairing and the other
upkeep live in ``upkeep``, which reads the set and calls these methods.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from distributed import Client

from ...connection import DaskConnection
from ...errors import DaskBackendError, error
from ...formatting import seconds
from ...metrics.model_calls import ModelMetrics
from .backpressure import QueueLimit
from .on_demand import OnDemandLoad
from .replica import LeaveReason, Replica, ReplicaState
from .routing import choose_replica
from .spec import ReplicaSpec


class ReplicaSet:
    """N actors holding one model: who they are, and which is free for the next call."""

    def __init__(
        self,
        connection: DaskConnection,
        spec: ReplicaSpec,
        load_on_demand: Callable[[ReplicaSet], None] | None = None,
        metrics: ModelMetrics | None = None,
    ):
        self.connection, self.spec = connection, spec
        self.metrics = metrics if metrics is not None else ModelMetrics()
        self.replicas: list[Replica] = []  # routed; replaced, never changed in place
        # Every replica made for the set and not yet garbage: what ``states`` counts.
        self._members: weakref.WeakSet[Replica] = weakref.WeakSet()
        self._count = spec.count  # replicas to keep (the autoscaler moves it)
        self._lost_workers: set[str] = set()  # the scheduler may still list them a while
        self._changed = threading.Condition(threading.Lock())  # not re-entered; faster
        self._closed = threading.Event()
        self._calls = 0
        self._outstanding = 0  # calls on replicas, of all replicas (see ``backpressure``)
        self._waiting = 0  # calls waiting for a live replica
        limit = spec.max_queued_calls
        self._queue_limit = None if limit is None else QueueLimit(spec.module_id, limit)
        start = None if load_on_demand is None else (lambda: load_on_demand(self))
        self.on_demand = OnDemandLoad(self._changed, start, needed=spec.lazy)

    @property
    def client(self) -> Client:
        """The connection's current client: a new one after the scheduler came back."""
        return self.connection.client

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def count(self) -> int:
        """Replicas to keep."""
        return self._count

    @property
    def wanted(self) -> int:
        """Replicas to keep placed: ``count`` less those evicted (they load on demand)."""
        return 0 if self.on_demand.needed else self._count - self.on_demand.evictions

    @property
    def lost_workers(self) -> frozenset[str]:
        """Workers whose replicas died here: never placed on again."""
        with self._changed:
            return frozenset(self._lost_workers)

    def regain(self, worker: str) -> None:
        """A lost worker may hold replicas again (it was frozen, and answers again)."""
        with self._changed:
            self._lost_workers.discard(worker)

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

    # -- calls ---------------------------------------------------------------------------

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
                if self.on_demand.possible:
                    attempt = self.on_demand.join(attempt)
                remaining = deadline - time.monotonic()
                if remaining <= 0 and self.on_demand.needed:
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
        """A call on ``replica`` ended; a draining replica is released after its last."""
        with self._changed:
            replica.outstanding -= 1
            self._outstanding -= 1
            if replica.state is not ReplicaState.DRAINING or replica.outstanding:
                return
        replica.release()

    def sample(self) -> tuple[int, int, int]:
        """(calls in flight on replicas, calls started so far, routed replicas): what the
        autoscaler samples, read without a lock."""
        return self._outstanding, self._calls, len(self.replicas)

    @property
    def waiting(self) -> int:
        """Calls waiting for a live replica (read without a lock, for metrics)."""
        return self._waiting

    def states(self) -> dict[ReplicaState, int]:
        """How many of the set's replicas are in each state (released ones are gone)."""
        with self._changed:
            members = list(self._members)
        counts = dict.fromkeys(ReplicaState, 0)
        for replica in members:
            counts[replica.state] += 1
        del counts[ReplicaState.RELEASED]
        return counts

    # -- membership ----------------------------------------------------------------------

    def new_replica(self, worker: str, key: str) -> Replica:
        """A replica about to be started on ``worker`` (STARTING), counted by ``states``."""
        replica = Replica(worker, key)
        with self._changed:
            self._members.add(replica)
        return replica

    def add(self, replicas: list[Replica]) -> None:
        """Started replicas enter routing."""
        with self._changed:
            for replica in replicas:
                replica.state = ReplicaState.ROUTED
                self._members.add(replica)
            self.replicas = [*self.replicas, *replicas]
            self._changed.notify_all()

    def leave_routing(self, replica: Replica, reason: LeaveReason) -> bool:
        """No new call goes to ``replica``; False if it was not routed (nor starting).

        ``DEAD``: its calls in flight retry elsewhere and its worker is never used again
        (a starting replica whose worker left ends here too). Otherwise it drains: it is
        released after its last call in flight. An evicted or scaled-down last replica
        leaves the model to load on its next call.
        """
        idle = False
        with self._changed:
            state = replica.state
            if state is ReplicaState.STARTING and reason.dead:
                replica.state = ReplicaState.DEAD
                self._lost_workers.add(replica.worker)
                return True
            if state is not ReplicaState.ROUTED:
                return False
            self.replicas = [r for r in self.replicas if r is not replica]
            if reason.drains:
                replica.state = ReplicaState.DRAINING
                idle = replica.outstanding == 0
            else:
                replica.state = ReplicaState.DEAD
                self._lost_workers.add(replica.worker)
            if reason is LeaveReason.EVICTED:
                self.on_demand.evictions += 1
            if reason.unloads_if_last and not self.replicas:
                self.on_demand.needed = True
            self._changed.notify_all()
        if idle:
            replica.release()
        return True

    def scale_to(self, count: int) -> None:
        """Keep ``count`` replicas from now on (upkeep places or retires them)."""
        with self._changed:
            self._count = count

    def routed(self) -> list[Replica]:
        """The replicas calls go to now."""
        return list(self.replicas)

    def close(self) -> list[Replica]:
        """No call is taken from now on; returns the replicas that were routed (the
        caller releases them and their placements, see ``upkeep.releasing``)."""
        self._closed.set()
        with self._changed:
            replicas, self.replicas = self.replicas, []
            self._changed.notify_all()
        return replicas

    def describe(self) -> list[dict[str, Any]]:
        """Each routed replica; then one entry per replica evicted or not loaded yet."""
        resident = [
            {
                "worker": r.worker,
                "key": r.key,
                "outstanding": r.outstanding,
                "alive": r.alive,
                "state": "resident",
                "bytes": r.size,
            }
            for r in self.replicas
        ]
        on_demand = self.on_demand
        missing = max(self._count, on_demand.needed) - len(resident)  # scaled to 0: one entry
        if on_demand.evictions and missing > 0:
            state, missing = "evicted", min(on_demand.evictions, missing)
        elif on_demand.needed and missing > 0:
            state = "not loaded (lazy)"
        else:
            return resident
        return resident + [
            {"worker": None, "key": None, "outstanding": 0, "alive": False, "state": state}
            for _ in range(missing)
        ]
