"""Placement bookkeeping on the scheduler: each function is one atomic step.

Dask holds an actor's resources only while its constructor runs (distributed#2843),
so we keep our own books of placements and of what each loaded model takes of its
worker's memory in the scheduler's task metadata (see ``books``). Choosing workers
(``plan``), choosing what to evict and writing both books happen in one function on
the scheduler's event loop, and so do releases, so concurrent loads and unloads, from
any thread or client process, see each other's placements and never lose an update.
"""

from __future__ import annotations

import time
from typing import Any

from .books import EVICTED, EVICTIONS, MEASURED, MEMORY, PLACEMENTS, RECENT_EVICTIONS
from .plan import WorkerView, plan_placement


def reserve(
    keys: list[str],
    resources: dict[str, float],
    avoid: list[str],
    exclude: list[str],
    memory: dict[str, Any] | None = None,
    *,
    dask_scheduler: Any,
) -> dict[str, Any]:
    """Book up to one worker per key for a new actor (see ``plan.plan_placement``).

    ``memory``: ``{"model", "bytes", "fraction", "evict", "stamps", "name", "module_id"}``;
    the model's remembered measured size replaces ``bytes`` when there is one. Returns
    ``{"placed": [[worker, key], ...], "evicted": [[worker, key], ...], "bytes": size}``,
    or ``{"offered": {worker: resources}, "unbooked": {worker: resources left}, "free":
    {worker: bytes}, "paused": [worker, ...], "bytes": size}`` when nothing fits.
    """
    metadata = dask_scheduler.task_metadata
    book = metadata.setdefault(PLACEMENTS, {})
    memory_book = metadata.setdefault(MEMORY, {})
    now = time.time()
    size = 0
    if memory:
        _touch(memory_book, memory.get("stamps") or {})
        size = int((metadata.get(MEASURED) or {}).get(memory["model"], memory["bytes"]))
    plan = plan_placement(
        keys,
        resources,
        avoid,
        exclude,
        memory,
        size,
        _worker_views(dask_scheduler),
        book,
        memory_book,
    )
    if not plan.placed:
        return {**plan.report, "bytes": size}
    names = []
    for worker, victim in plan.evicted:
        (book.get(worker) or {}).pop(victim, None)
        names.append(memory_book[worker].pop(victim, {}).get("name") or "")
    if plan.evicted:
        _remember_evictions(metadata, plan.evicted, names, (memory or {}).get("name"), now)
    for worker, key in plan.placed:
        book.setdefault(worker, {})[key] = dict(resources)
        if memory:
            memory_book.setdefault(worker, {})[key] = {
                "model": memory["model"],
                "bytes": size,
                "estimate": int(memory["bytes"]),
                "used": now,
                "evictable": bool(memory.get("evict")),
                "loaded": False,
                "fraction": memory["fraction"],
                "name": memory.get("name") or "",
                "module_id": memory.get("module_id") or "",
            }
    evicted = [list(pair) for pair in plan.evicted]
    if evicted:
        dask_scheduler.log_event(EVICTIONS, {"evicted": evicted})
    return {"placed": [list(pair) for pair in plan.placed], "evicted": evicted, "bytes": size}


def _remember_evictions(
    metadata: dict, evicted: list, names: list[str], for_model: str | None, now: float
) -> None:
    """Keep the last evictions, with the models' names, for the operator's view."""
    kept = metadata.setdefault(EVICTED, {"total": 0, "recent": []})
    kept["total"] += len(evicted)
    kept["recent"] += [
        {"time": now, "worker": worker, "key": key, "model": name, "for": for_model or ""}
        for (worker, key), name in zip(evicted, names, strict=True)
    ]
    del kept["recent"][:-RECENT_EVICTIONS]


def _worker_views(dask_scheduler: Any) -> dict[str, WorkerView]:
    """The scheduler's workers as plain data for the plan."""
    views = {}
    for address, worker in dask_scheduler.workers.items():
        status = getattr(worker, "status", None)
        running = status is None or getattr(status, "name", status) == "running"
        views[address] = WorkerView(
            running,
            dict(worker.resources or {}),
            int(getattr(worker, "memory_limit", 0) or 0),
        )
    return views


def _touch(memory_book: dict, stamps: dict[str, float]) -> None:
    if not stamps:
        return
    for bookings in memory_book.values():
        for key, booking in bookings.items():
            stamp = stamps.get(key)
            if stamp is not None and stamp > booking["used"]:
                booking["used"] = stamp


def touch(stamps: dict[str, float], *, dask_scheduler: Any) -> None:
    """Record when models were last called (``{actor key: time}``), for eviction."""
    _touch(dask_scheduler.task_metadata.get(MEMORY) or {}, stamps)


def keep(keys: list[str], *, dask_scheduler: Any) -> None:
    """Never evict these actors (published: other processes may hold them)."""
    wanted = set(keys)
    for bookings in (dask_scheduler.task_metadata.get(MEMORY) or {}).values():
        for key, booking in bookings.items():
            if key in wanted:
                booking["evictable"] = False


def loaded(sizes: list[list[Any]], *, dask_scheduler: Any) -> None:
    """Models finished loading (``[worker, key, measured bytes or None]``): book what each
    measured, remember it for the model's path, and let them be evicted from now on.

    A measurement never books less than the first estimate (the size on disk): memory
    that evicted models free while another loads on the worker hides the load's growth.
    """
    metadata = dask_scheduler.task_metadata
    memory_book = metadata.get(MEMORY) or {}
    for worker, key, measured in sizes:
        booking = memory_book.get(worker, {}).get(key)
        if booking is None:
            continue  # released meanwhile
        booking["loaded"] = True
        if measured:
            measured = max(int(measured), booking.get("estimate", 0))
            booking["bytes"] = measured
            metadata.setdefault(MEASURED, {})[booking["model"]] = measured


def release(placements: list[list[str]], *, dask_scheduler: Any) -> None:
    """Drop booked placements (``[worker, key]`` pairs); unknown ones are ignored."""
    metadata = dask_scheduler.task_metadata
    for name in (PLACEMENTS, MEMORY):
        book = metadata.get(name) or {}
        for address, key in placements:
            actors = book.get(address)
            if actors is None:
                continue
            actors.pop(key, None)
            if not actors:
                del book[address]
