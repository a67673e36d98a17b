"""Placement bookkeeping that runs on the scheduler: each function is one atomic step.

Dask holds an actor's resources only while its constructor runs (distributed#2843),
so we keep our own book of placements in the scheduler's task metadata:
``{PLACEMENTS: {worker: {actor key: resources}}}``. Choosing workers and writing
them in the book happen in one function on the scheduler's event loop, and so do
releases, so concurrent loads and unloads, from any thread or client process,
see each other's placements and never lose an update.

These functions travel by value (see ``placement``): they use only the standard
library and the scheduler they are given, so the scheduler needs no caikit-dask.
"""

from __future__ import annotations

from typing import Any

PLACEMENTS = "caikit-dask-placements"


def reserve(
    keys: list[str],
    resources: dict[str, float],
    avoid: list[str],
    exclude: list[str],
    *,
    dask_scheduler: Any,
) -> dict[str, Any]:
    """Choose a worker for each actor key and book it, in one step.

    Workers in ``exclude`` are never chosen, workers in ``avoid`` only when no other
    fits. Distinct workers where possible, least loaded first; a model with
    resources gets only workers whose declared resources, less what the book holds,
    still cover them (so possibly fewer than ``keys``). Returns
    ``{"placed": [[worker, key], ...]}``, or ``{"offered": {worker: resources}}``
    when nothing fits.
    """
    book = dask_scheduler.task_metadata.setdefault(PLACEMENTS, {})
    excluded, avoided = set(exclude), set(avoid)
    fitting = []
    for address, worker in dask_scheduler.workers.items():
        if address in excluded:
            continue
        offered = worker.resources or {}
        taken: dict[str, float] = {}
        for held in (book.get(address) or {}).values():
            for name, amount in (held or {}).items():
                taken[name] = taken.get(name, 0) + amount
        if all(offered.get(n, 0) - taken.get(n, 0) >= amount for n, amount in resources.items()):
            fitting.append(address)
    if not fitting:
        return {
            "offered": {
                address: dict(worker.resources or {})
                for address, worker in dask_scheduler.workers.items()
                if address not in excluded
            }
        }
    preferred = [address for address in fitting if address not in avoided] or fitting
    preferred.sort(key=lambda address: (len(book.get(address) or {}), address))
    if resources:
        chosen = preferred[: len(keys)]
    else:
        chosen = [preferred[i % len(preferred)] for i in range(len(keys))]
    placed = []
    for address, key in zip(chosen, keys, strict=False):
        book.setdefault(address, {})[key] = dict(resources)
        placed.append([address, key])
    return {"placed": placed}


def release(placements: list[list[str]], *, dask_scheduler: Any) -> None:
    """Drop booked placements (``[worker, key]`` pairs); unknown ones are ignored."""
    book = dask_scheduler.task_metadata.get(PLACEMENTS) or {}
    for address, key in placements:
        actors = book.get(address)
        if actors is None:
            continue
        actors.pop(key, None)
        if not actors:
            del book[address]
