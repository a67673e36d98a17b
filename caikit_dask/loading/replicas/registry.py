"""The one registry of what this process serves: its replica sets, and who owns each actor.

The health check, the autoscaler, last-call reporting, eviction and retirement notices
all find models here; sets are held weakly (a proxy garbage-collected releases its
model), and an actor key maps to the set whose replica it is, so a scheduler notice
naming an actor reaches its owner.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from .replica_set import ReplicaSet


class Registry:
    """Replica sets served by this process, and the owners of actor keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: weakref.WeakSet[ReplicaSet] = weakref.WeakSet()
        self._owners: weakref.WeakValueDictionary[str, ReplicaSet] = weakref.WeakValueDictionary()

    def serve(self, replica_set: ReplicaSet) -> None:
        with self._lock:
            self._sets.add(replica_set)

    def served(self, connection: Any = None) -> list[ReplicaSet]:
        """The open sets (of ``connection`` only, if given)."""
        with self._lock:
            sets = list(self._sets)
        return [
            s for s in sets if not s.closed and (connection is None or s.connection is connection)
        ]

    def own(self, replica_set: ReplicaSet, keys: Iterable[str]) -> None:
        """Notices about these actor keys reach ``replica_set`` from now on."""
        with self._lock:
            for key in keys:
                self._owners[key] = replica_set

    def owner(self, key: str) -> ReplicaSet | None:
        with self._lock:
            return self._owners.get(key)

    def disown(self, key: str) -> ReplicaSet | None:
        """Forget who owns ``key``; returns who did."""
        with self._lock:
            return self._owners.pop(key, None)


served = Registry()
