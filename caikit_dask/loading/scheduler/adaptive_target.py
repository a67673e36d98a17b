"""On the scheduler: adaptive scaling counts the workers our models need.

Dask sizes an adaptive cluster by ``Scheduler.adaptive_target``, from tasks and
stored data. Actors are neither, so an adaptive cluster would never grow for a
model that fits nowhere, and would keep trying to retire workers whose models
have nowhere else to go. This plugin wraps ``adaptive_target`` (what Dask's
``Adaptive`` and dask-kubernetes' autoscaler ask the scheduler) and raises it to:

- the workers asked for: a load that found no room asks for one worker more than
  the cluster had when it asked, until it withdraws the ask (it found room, or
  gave up) or the ask expires;
- the workers in use: as many as the booked models fill, per resource and by
  memory, counted against the largest worker (and never more than hold them now).

It also notes when the target was last asked, so that a caller connected by
address can tell whether an adaptive deployment watches this cluster (the scheduler's
Prometheus and JSON views read the target too; those reads do not count).

Sent by value (see the package): only distributed and the standard library.
"""

from __future__ import annotations

import math
import time
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from ...dask_internals import called_by_a_view, wrap_scheduler_method
from .books import ASKED, ASKS, MEMORY, PLACEMENTS


class CountModelsInAdaptiveTarget(SchedulerPlugin):
    """Keep adaptive scaling from shrinking under our models, and grow it for them."""

    name = "caikit-dask-adaptive-target"
    idempotent = True  # one per scheduler, whichever process registers first

    async def start(self, scheduler: Any) -> None:
        def counting_models(original: Any) -> Any:
            def adaptive_target(target_duration: Any = None) -> int:
                if not called_by_a_view():  # a Prometheus scrape is not an autoscaler
                    scheduler.task_metadata[ASKED] = time.time()
                target = original(target_duration)
                return max(target, workers_asked_for(scheduler), workers_in_use(scheduler))

            return adaptive_target

        wrap_scheduler_method(scheduler, "adaptive_target", counting_models)


def workers_asked_for(scheduler: Any) -> int:
    """The workers each live ask wants more than the cluster had (one, unless it said how
    many), on top of the most it had (0 with no ask)."""
    asks = scheduler.task_metadata.get(ASKS) or {}
    now = time.time()
    for ask_id in [i for i, ask in asks.items() if ask["until"] < now]:
        del asks[ask_id]
    if not asks:
        return 0
    return max(ask["base"] for ask in asks.values()) + sum(
        ask.get("count", 1) for ask in asks.values()
    )


def workers_in_use(scheduler: Any) -> int:
    """How many workers the booked models fill, packed onto workers like the largest."""
    workers = scheduler.workers
    book = {a: keys for a, keys in (scheduler.task_metadata.get(PLACEMENTS) or {}).items() if keys}
    holders = [address for address in book if address in workers]
    if not holders:
        return 0
    needed = 1
    booked: dict[str, float] = {}
    for address in holders:
        for resources in book[address].values():
            for name, amount in (resources or {}).items():
                booked[name] = booked.get(name, 0) + amount
    for name, amount in booked.items():
        largest = max((ws.resources or {}).get(name, 0) for ws in workers.values())
        if largest > 0:
            needed = max(needed, math.ceil(amount / largest))
    memory_book = scheduler.task_metadata.get(MEMORY) or {}
    bookings = [b for a in holders for b in (memory_book.get(a) or {}).values()]
    largest = max((ws.memory_limit or 0) for ws in workers.values())
    if bookings and largest:
        room = largest * max(b.get("fraction", 1.0) for b in bookings)
        needed = max(needed, math.ceil(sum(b["bytes"] for b in bookings) / room))
    return min(needed, len(holders))


def ask(
    ask_id: str, ttl: float, adaptive_seen: float | None, count: int = 1, *, dask_scheduler: Any
) -> dict:
    """Ask for ``count`` more workers than the cluster has now, for ``ttl`` seconds at most,
    if the cluster is adaptive: an adaptive deployment asked for the target in the last
    ``adaptive_seen`` seconds (None: the caller knows it is adaptive).

    Returns the worker count and whether the ask was made.
    """
    metadata = dask_scheduler.task_metadata
    workers = len(dask_scheduler.workers)
    target_asked = metadata.get(ASKED)
    adaptive = adaptive_seen is None or (
        target_asked is not None and time.time() - target_asked < adaptive_seen
    )
    if adaptive:
        asked = {"base": workers, "until": time.time() + ttl, "count": count}
        metadata.setdefault(ASKS, {})[ask_id] = asked
    return {"workers": workers, "asked": adaptive}


def withdraw(ask_id: str, *, dask_scheduler: Any) -> None:
    """The ask is answered (or given up): stop counting it."""
    (dask_scheduler.task_metadata.get(ASKS) or {}).pop(ask_id, None)
