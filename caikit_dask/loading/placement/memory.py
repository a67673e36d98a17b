"""What a model takes of a worker's memory, as the caller sees it.

A model's first size estimate is its size on disk; once loaded, the actor
measures what the load took (see ``actor.model_load``) and the scheduler remembers
it for the model's path, so the next placement of that model uses the measured size.
The booking itself, and eviction, happen on the scheduler (see ``scheduler.plan``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from dask.utils import format_bytes

from ...config import BackendConfig


@dataclass(frozen=True)
class MemoryPolicy:
    """How far models may fill a worker, and whether to evict for room.

    ``fraction``: of the worker's Dask pause threshold (``distributed.worker.memory.pause``
    x ``memory_limit``), the process memory placement fills the worker to, counting its
    measured process memory (its own, its models', what they allocated after loading),
    see ``scheduler.plan.free``.
    """

    fraction: float = 0.8
    evict: bool = False

    @classmethod
    def from_settings(cls, settings: BackendConfig) -> MemoryPolicy:
        return cls(fraction=settings.memory_fraction, evict=settings.eviction == "lru")


@dataclass(frozen=True)
class MemoryNeed:
    """One model's memory request: its path, first size estimate, and the policy.

    ``stamps`` (``{actor key: time}``, last calls of this process's models) travel with
    the request, so the scheduler evicts by the latest use. ``name`` and ``module_id``
    are booked with it, so the scheduler can tell what it holds (``caikit-dask status``).
    """

    policy: MemoryPolicy
    model: str
    size: int
    stamps: dict[str, float] = field(default_factory=dict, compare=False)
    name: str = ""
    module_id: str = ""

    def request(self) -> dict[str, Any]:
        """What ``scheduler.booking.reserve`` needs to book the model."""
        return {
            "model": self.model,
            "bytes": self.size,
            "fraction": self.policy.fraction,
            "evict": self.policy.evict,
            "stamps": self.stamps,
            "name": self.name,
            "module_id": self.module_id,
        }


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
        f"(room left under memory_fraction={policy.fraction} of Dask's pause threshold, less "
        f"what each worker's process holds: {workers or 'no workers'}); "
        f"{fixes}"
    )
