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

import dask

from .books import (
    EVICTED,
    EVICTIONS,
    MEASURED,
    MEMORY,
    PLACEMENTS,
    RECENT_EVICTIONS,
    RELEASED,
    RELIEVED,
)
from .plan import FREED_AFTER, WorkerView, ceiling, plan_placement, seen

_FREEING_KEPT = 30.0  # seconds a released model is remembered (see ``_freeing``)


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
    the model's remembered measured size replaces ``bytes`` when there is one (see
    ``_expected_size`` when there is none). Returns
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
        size = _expected_size(metadata.get(MEASURED) or {}, memory["model"], memory["bytes"])
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
        evicted_booking = memory_book[worker].pop(victim, {})
        _remember_released(metadata, worker, evicted_booking, now)
        names.append(evicted_booking.get("name") or "")
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


def _expected_size(measured: dict[str, int], model: str, estimate: int) -> int:
    """The model's measured size; a model never measured yet is taken to be as large as
    the largest one measured (its size on disk may be a few bytes of a model that
    builds its weights at load), and at least its size on disk."""
    if model in measured:
        return int(measured[model])
    return int(max(estimate, max(measured.values(), default=0)))


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
    """The scheduler's workers as plain data for the plan, with what their last
    heartbeat measured (process memory) and Dask's pause threshold."""
    views = {}
    pause = pause_fraction()
    released = dask_scheduler.task_metadata.get(RELEASED) or {}
    for address, worker in dask_scheduler.workers.items():
        status = getattr(worker, "status", None)
        running = status is None or getattr(status, "name", status) == "running"
        memory = getattr(worker, "memory", None)
        seen = float(getattr(worker, "last_seen", 0) or 0)
        views[address] = WorkerView(
            running,
            dict(worker.resources or {}),
            int(getattr(worker, "memory_limit", 0) or 0),
            int(getattr(memory, "process", 0) or 0),
            seen,
            pause,
            sum(size for when, size in released.get(address) or () if when > seen - FREED_AFTER),
        )
    return views


def pause_fraction() -> float:
    """Dask's worker pause threshold (``distributed.worker.memory.pause``), as the
    scheduler's config has it; when pausing is off, the nanny's terminate threshold."""
    for key in ("distributed.worker.memory.pause", "distributed.worker.memory.terminate"):
        value = dask.config.get(key, None)
        if value:
            return float(value)
    return 1.0


def _remember_released(metadata: dict, worker: str, booking: dict, now: float) -> None:
    """A loaded model's booking is gone: the worker's process memory may still show it
    until a heartbeat after its actor is freed (see ``plan.free``)."""
    if not booking.get("loaded"):
        return
    released = metadata.setdefault(RELEASED, {})
    kept = [entry for entry in released.get(worker) or () if entry[0] > now - _FREEING_KEPT]
    released[worker] = [*kept, [now, int(booking.get("bytes") or 0)]]


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
        booking["loaded_at"] = time.time()
        if measured:
            measured = max(int(measured), booking.get("estimate", 0))
            booking["bytes"] = measured
            metadata.setdefault(MEASURED, {})[booking["model"]] = measured


def release(placements: list[list[str]], *, dask_scheduler: Any) -> None:
    """Drop booked placements (``[worker, key]`` pairs); unknown ones are ignored."""
    metadata = dask_scheduler.task_metadata
    now = time.time()
    for name in (PLACEMENTS, MEMORY):
        book = metadata.get(name) or {}
        for address, key in placements:
            actors = book.get(address)
            if actors is None:
                continue
            booking = actors.pop(key, None)
            if name == MEMORY and booking:
                _remember_released(metadata, address, booking, now)
            if not actors:
                del book[address]


def relieve(*, dask_scheduler: Any) -> dict[str, Any]:
    """Workers whose process memory grew past their ceiling (models that cache): evict
    their least recently used evictable models (``eviction: lru``) before Dask pauses
    them, announced as any eviction; those with nothing to evict are reported (placement
    already stops there: they have no room). One step per worker, once what was loaded,
    evicted or released there shows in its heartbeats.

    Returns ``{"evicted": [[worker, key], ...], "over": {worker: [process, ceiling]}}``.
    """
    metadata = dask_scheduler.task_metadata
    memory_book = metadata.get(MEMORY) or {}
    released = metadata.get(RELEASED) or {}
    relieved = metadata.setdefault(RELIEVED, {})
    book = metadata.get(PLACEMENTS) or {}
    now = time.time()
    evicted: list[list[str]] = []
    over: dict[str, list[float]] = {}
    for address, view in _worker_views(dask_scheduler).items():
        held = memory_book.get(address) or {}
        if not held or not view.memory_limit or not view.process:
            continue
        top = ceiling(view, max(float(b.get("fraction") or 1.0) for b in held.values()))
        excess = view.process - view.freeing - top
        if excess <= 0:
            relieved.pop(address, None)
            continue
        settled = view.seen - FREED_AFTER
        if (
            relieved.get(address, 0) > settled
            or any(when > settled for when, _ in released.get(address) or ())
            or not all(seen(view, booking) for booking in held.values())
        ):
            continue  # a load, an eviction or a release here does not show in a heartbeat yet
        victims = sorted(
            (booking["used"], key)
            for key, booking in held.items()
            if booking.get("evictable") and booking.get("loaded")
        )
        if not victims:
            over[address] = [view.process, top]
        names = []
        for _, key in victims:
            if excess <= 0:
                break
            booking = held.pop(key)
            (book.get(address) or {}).pop(key, None)
            _remember_released(metadata, address, booking, now)
            excess -= int(booking.get("bytes") or 0)
            evicted.append([address, key])
            names.append(booking.get("name") or "")
        if names:
            relieved[address] = now
            _remember_evictions(
                metadata, [tuple(e) for e in evicted[-len(names) :]], names, "memory pressure", now
            )
    if evicted:
        dask_scheduler.log_event(EVICTIONS, {"evicted": evicted})
    return {"evicted": evicted, "over": over}
