"""What a model takes of a worker's memory, as the caller sees it.

A model's first size estimate is its size on disk; once loaded, the actor
measures what the load took (see ``actor``) and the scheduler remembers it for
the model's path, so the next placement of that model uses the measured size.
The booking itself, and eviction, happen on the scheduler (see ``scheduler_side``).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from dask.utils import format_bytes

from ..config import BackendConfig


@dataclass(frozen=True)
class MemoryPolicy:
    """How much of a worker's memory models may take, and whether to evict for room."""

    fraction: float = 0.8
    evict: bool = False

    @classmethod
    def from_settings(cls, settings: BackendConfig) -> MemoryPolicy:
        return cls(fraction=settings.memory_fraction, evict=settings.eviction == "lru")


@dataclass(frozen=True)
class MemoryNeed:
    """One model's memory request: its path, first size estimate, and the policy.

    ``connection`` is the one whose models' last-call times travel with the request.
    """

    policy: MemoryPolicy
    model: str
    size: int
    connection: Any = field(default=None, compare=False)

    def request(self) -> dict[str, Any]:
        """What ``scheduler_side.reserve`` needs to book the model."""
        return {
            "model": self.model,
            "bytes": self.size,
            "fraction": self.policy.fraction,
            "evict": self.policy.evict,
            "stamps": LastCalls.take(self.connection),
        }


class LastCalls:
    """When this process's models were last called, for least-recently-used eviction.

    The call path only counts calls (``Replica.last_used``); which replicas were
    called since the last look is turned into wall-clock stamps here, in batches:
    each health-check round, and with every placement request.
    """

    _sets: weakref.WeakSet = weakref.WeakSet()
    _lock = threading.Lock()

    @classmethod
    def track(cls, replica_set: Any) -> None:
        with cls._lock:
            cls._sets.add(replica_set)

    @classmethod
    def take(cls, connection: Any) -> dict[str, float]:
        """``{actor key: now}`` for the replicas of ``connection`` called since the last take."""
        now = time.time()
        stamps = {}
        with cls._lock:
            replica_sets = [s for s in cls._sets if s.connection is connection]
        for replica_set in replica_sets:
            for replica in list(replica_set.replicas):
                if replica.last_used != replica.stamped:
                    replica.stamped = replica.last_used
                    stamps[replica.future.key] = now
        return stamps


def size_on_disk(path: Any) -> int:
    """Bytes of a model's files: its first size estimate (0 when not a local path)."""
    path = str(path)
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue  # removed meanwhile
    return total


def describe_no_room(outcome: dict[str, Any], policy: MemoryPolicy) -> str:
    """Why a model fits on no worker's memory, and what to do about it."""
    free = outcome.get("free") or {}
    paused = set(outcome.get("paused") or ())
    workers = ", ".join(
        f"{address}: paused" if address in paused else f"{address}: {format_bytes(max(0, left))}"
        for address, left in sorted(free.items())
        if left is not None or address in paused
    )
    fixes = "add workers or give them more memory (`dask worker --memory-limit`)"
    if not policy.evict:
        fixes += ", or set `eviction: lru` to unload the least recently used models"
    else:
        fixes += " (the models there that could be evicted would not free enough)"
    return (
        f"not enough worker memory for the model's {format_bytes(outcome.get('bytes', 0))} "
        f"(free model memory at memory_fraction={policy.fraction}: {workers or 'no workers'}); "
        f"{fixes}"
    )
