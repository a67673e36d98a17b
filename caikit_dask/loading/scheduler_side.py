"""Placement bookkeeping that runs on the scheduler: each function is one atomic step.

Dask holds an actor's resources only while its constructor runs (distributed#2843),
so we keep our own book of placements in the scheduler's task metadata:
``{PLACEMENTS: {worker: {actor key: resources}}}``, and beside it what each loaded
model takes of its worker's memory: ``{MEMORY: {worker: {actor key: booking}}}``, a
booking being ``{"model", "bytes", "used", "evictable", "loaded", "fraction"}``. Choosing workers,
choosing what to evict and writing both books happen in one function on the
scheduler's event loop, and so do releases, so concurrent loads and unloads, from
any thread or client process, see each other's placements and never lose an update.

These functions travel by value (see ``placement``): they use only the standard
library and the scheduler they are given, so the scheduler needs no caikit-dask.
"""

from __future__ import annotations

import time
from typing import Any

PLACEMENTS = "caikit-dask-placements"
MEMORY = "caikit-dask-memory"
MEASURED = "caikit-dask-measured"  # model path -> bytes its last load took on a worker
EVICTIONS = "caikit-dask-evictions"  # event topic: [[worker, actor key], ...] evicted


def reserve(
    keys: list[str],
    resources: dict[str, float],
    avoid: list[str],
    exclude: list[str],
    memory: dict[str, Any] | None = None,
    *,
    dask_scheduler: Any,
) -> dict[str, Any]:
    """Choose a worker for each actor key and book it, in one step.

    Workers in ``exclude`` are never chosen, workers in ``avoid`` only when no other
    fits, paused or retiring workers never. Distinct workers where possible, least
    loaded first; a model with resources gets only workers whose declared
    resources, less what the book holds, still cover them (so possibly fewer than
    ``keys``). With ``memory`` (``{"model", "bytes", "fraction", "evict", "stamps"}``)
    a worker must also have room: ``memory_limit × fraction`` less the models booked
    there covers the model (its measured size if one was remembered); with
    ``evict`` the least recently used loaded models of a worker are evicted to make
    room. Returns ``{"placed": [[worker, key], ...], "evicted": [[worker, key], ...],
    "bytes": size}``, or ``{"offered": {worker: resources}, "unbooked": {worker: resources
    left}, "free": {worker: bytes}, "paused": [worker, ...], "bytes": size}`` when
    nothing fits.
    """
    metadata = dask_scheduler.task_metadata
    book = metadata.setdefault(PLACEMENTS, {})
    memory_book = metadata.setdefault(MEMORY, {})
    now = time.time()
    if memory:
        _touch(memory_book, memory.get("stamps") or {})
        size = int((metadata.get(MEASURED) or {}).get(memory["model"], memory["bytes"]))
    else:
        size = 0
    excluded, avoided = set(exclude), set(avoid)
    running, paused = [], []
    for address, worker in dask_scheduler.workers.items():
        if address in excluded:
            continue
        status = getattr(worker, "status", None)
        if status is not None and getattr(status, "name", status) != "running":
            paused.append(address)
        elif _resources_fit(worker, book.get(address) or {}, resources):
            running.append(address)
    placed: list[list[str]] = []
    evicted: list[list[str]] = []
    for key in keys:
        fresh = [a for a in running if a not in {w for w, _ in placed}]
        # A resource is never shared: distinct workers only.
        candidates = fresh if resources else fresh or running
        preferred = [a for a in candidates if a not in avoided] or candidates
        preferred.sort(key=lambda address: (len(book.get(address) or {}), address))
        chosen, victims = _with_room(dask_scheduler, memory_book, preferred, size, memory)
        if chosen is None:
            break
        for victim in victims:
            (book.get(chosen) or {}).pop(victim, None)
            memory_book[chosen].pop(victim, None)
            evicted.append([chosen, victim])
        book.setdefault(chosen, {})[key] = dict(resources)
        if memory:
            memory_book.setdefault(chosen, {})[key] = {
                "model": memory["model"],
                "bytes": size,
                "estimate": int(memory["bytes"]),
                "used": now,
                "evictable": bool(memory.get("evict")),
                "loaded": False,
                "fraction": memory["fraction"],
            }
        placed.append([chosen, key])
    if evicted:
        dask_scheduler.log_event(EVICTIONS, {"evicted": evicted})
    if placed:
        return {"placed": placed, "evicted": evicted, "bytes": size}
    return {
        "offered": {
            address: dict(worker.resources or {})
            for address, worker in dask_scheduler.workers.items()
            if address not in excluded
        },
        "unbooked": {
            address: _unbooked(worker, book.get(address) or {})
            for address, worker in dask_scheduler.workers.items()
            if address not in excluded
        },
        "free": {
            address: _free(dask_scheduler, memory_book, address, memory)
            for address in dask_scheduler.workers
            if address not in excluded
        },
        "paused": paused,
        "bytes": size,
    }


def _unbooked(worker: Any, held: dict[str, Any]) -> dict[str, float]:
    """The worker's declared resources less what the book holds there."""
    left = dict(worker.resources or {})
    for booked in held.values():
        for name, amount in (booked or {}).items():
            left[name] = left.get(name, 0) - amount
    return left


def _resources_fit(worker: Any, held: dict[str, Any], resources: dict[str, float]) -> bool:
    left = _unbooked(worker, held)
    return all(left.get(name, 0) >= amount for name, amount in resources.items())


def _free(dask_scheduler: Any, memory_book: dict, address: str, memory: Any) -> float | None:
    """Model memory still free on a worker (None: it has no memory limit)."""
    limit = getattr(dask_scheduler.workers[address], "memory_limit", 0) or 0
    if not memory or not limit:
        return None
    taken = sum(b["bytes"] for b in (memory_book.get(address) or {}).values())
    return limit * memory["fraction"] - taken


def _with_room(
    dask_scheduler: Any, memory_book: dict, preferred: list[str], size: int, memory: Any
) -> tuple[str | None, list[str]]:
    """The first preferred worker with room, else (evicting) the one that evicts least."""
    plans = []
    for address in preferred:
        free = _free(dask_scheduler, memory_book, address, memory)
        if free is None or free >= size:
            return address, []
        if not memory.get("evict"):
            continue
        evictable = sorted(
            (booking["used"], key, booking["bytes"])
            for key, booking in (memory_book.get(address) or {}).items()
            if booking["evictable"] and booking["loaded"] and booking["model"] != memory["model"]
        )
        victims = []
        for used, key, taken in evictable:
            if free >= size:
                break
            victims.append((used, key))
            free += taken
        if free >= size:
            plans.append((len(victims), max(used for used, _ in victims), address, victims))
    if not plans:
        return None, []
    _, _, address, victims = min(plans)
    return address, [key for _, key in victims]


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
