"""The cluster as an operator sees it, read from the scheduler's own state in one step.

Models and their replicas come from the booking books (each booking names its model, its
module and its bytes; see ``loading.scheduler.books``), workers from the scheduler's
worker states, trainings from their published datasets, events and task states, read
the way the caller's ``TrainingState`` reads them. Plain data only: JSON as it is.
"""

from __future__ import annotations

import time
from typing import Any

from ..dask_internals import published_datasets
from ..loading.scheduler.booking import pause_fraction
from ..loading.scheduler.books import EVICTED, MEMORY, PLACEMENTS
from ..training.events import (
    CANCELED,
    DATASET_PREFIX,
    ERRORED,
    FINISHED,
    FINISHED_METADATA,
    RUNNING,
    STATE_TOPIC,
)

TRAINING_STATUSES = ("QUEUED", "RUNNING", "COMPLETED", "ERRORED", "CANCELED")


def cluster_status(
    dask_scheduler: Any, moves: list[dict] | None = None, trainings: bool = True
) -> dict[str, Any]:
    """Models, workers, trainings by status, recent evictions and ``moves``, newest first."""
    workers = _workers(dask_scheduler)
    status = {
        "scheduler": dask_scheduler.address,
        "time": time.time(),
        "models": _models(dask_scheduler),
        "workers": workers,
        "recent": {"evictions": evictions(dask_scheduler)[1][::-1], "moves": moves or []},
    }
    listed = _trainings(dask_scheduler) if trainings else []
    status["trainings"] = {
        "counts": {name: sum(t["status"] == name for t in listed) for name in TRAINING_STATUSES},
        "list": listed,
    }
    return status


def evictions(dask_scheduler: Any) -> tuple[int, list[dict]]:
    """(evictions so far, the last ones oldest first), as the booking step keeps them."""
    kept = dask_scheduler.task_metadata.get(EVICTED) or {}
    return int(kept.get("total", 0)), [dict(e) for e in kept.get("recent", ())]


def _models(dask_scheduler: Any) -> list[dict[str, Any]]:
    metadata = dask_scheduler.task_metadata
    memory_book = metadata.get(MEMORY) or {}
    placements = metadata.get(PLACEMENTS) or {}
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for worker, held in placements.items():
        bookings = memory_book.get(worker) or {}
        for key, resources in held.items():
            booking = bookings.get(key) or {}
            name = booking.get("name") or _name_of(booking.get("model")) or str(key)
            module_id = booking.get("module_id") or ""
            model = models.setdefault(
                (name, module_id),
                {
                    "model": name,
                    "module_id": module_id,
                    "path": booking.get("model"),
                    "replicas": [],
                    "bytes": 0,
                },
            )
            task = dask_scheduler.tasks.get(key)
            loaded = booking.get("loaded", task is not None and task.state == "memory")
            model["replicas"].append(
                {
                    "worker": worker,
                    "key": key,
                    "state": "loaded" if loaded else "loading",
                    "bytes": int(booking.get("bytes") or 0),
                    "last_used": booking.get("used"),
                    "evictable": bool(booking.get("evictable")),
                    "resources": dict(resources or {}),
                }
            )
            model["bytes"] += int(booking.get("bytes") or 0)
    listed = sorted(models.values(), key=lambda m: (m["model"], m["module_id"]))
    for model in listed:
        model["replicas"].sort(key=lambda r: r["worker"])
    return listed


def _name_of(path: Any) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1] if path else ""


def _workers(dask_scheduler: Any) -> list[dict[str, Any]]:
    metadata = dask_scheduler.task_metadata
    memory_book = metadata.get(MEMORY) or {}
    placements = metadata.get(PLACEMENTS) or {}
    listed = []
    pause = pause_fraction()
    for address, ws in sorted(dask_scheduler.workers.items()):
        bookings = memory_book.get(address) or {}
        limit = int(getattr(ws, "memory_limit", 0) or 0)
        fractions = [b.get("fraction", 0.8) for b in bookings.values()]
        # The ceiling placement fills the worker's process memory to (``plan.ceiling``).
        model_memory = int(limit * pause * max(fractions or [0.8])) if limit else None
        booked = sum(int(b.get("bytes") or 0) for b in bookings.values())
        taken: dict[str, float] = {}
        for resources in (placements.get(address) or {}).values():
            for name, amount in (resources or {}).items():
                taken[name] = taken.get(name, 0) + amount
        status = getattr(ws, "status", None)
        listed.append(
            {
                "worker": address,
                "name": str(ws.name),
                "status": getattr(status, "name", str(status)),
                "memory_limit": limit or None,
                "model_memory": model_memory,
                "booked": booked,
                "free": None if model_memory is None else model_memory - booked,
                "models": len(placements.get(address) or {}),
                "resources": dict(ws.resources or {}),
                "resources_booked": taken,
            }
        )
    return listed


def training_status(events: list[dict], task_state: str | None, finished_at: Any) -> str:
    """A training's status from what the scheduler keeps of it (see ``training.state``)."""
    states = {msg.get("state") for msg in events}
    if finished_at or FINISHED in states or task_state == "memory":
        return "COMPLETED"
    if CANCELED in states:
        return "CANCELED"
    if ERRORED in states or task_state in ("erred", None, "released", "forgotten"):
        return "ERRORED"
    if task_state == "processing":
        return "RUNNING"
    return "QUEUED"


def _trainings(dask_scheduler: Any) -> list[dict[str, Any]]:
    by_id: dict[str, list] = {}
    for _, msg in dask_scheduler.get_events(STATE_TOPIC):
        if isinstance(msg, dict) and "id" in msg:
            by_id.setdefault(msg["id"], []).append(msg)
    marks = dask_scheduler.task_metadata.get(FINISHED_METADATA) or {}
    listed = []
    for name, dataset in list(published_datasets(dask_scheduler).items()):
        if not (isinstance(name, str) and name.startswith(DATASET_PREFIX)) or not dataset["keys"]:
            continue
        key = dataset["keys"][0]
        training_id = name[len(DATASET_PREFIX) :]
        events = [m for m in by_id.get(training_id, ()) if m.get("key", key) == key]
        task = dask_scheduler.tasks.get(key)
        task_state = task.state if task is not None else None
        started = [m for m in events if m.get("state") == RUNNING]
        ended = [m for m in events if m.get("state") in (FINISHED, ERRORED, CANCELED)]
        processing_on = getattr(task, "processing_on", None)
        listed.append(
            {
                "id": training_id,
                "status": training_status(events, task_state, marks.get(key)),
                "worker": processing_on.address
                if processing_on is not None
                else (started[-1].get("worker") if started else None),
                "started": started[-1].get("time") if started else None,
                "ended": (ended[-1].get("time") if ended else None) or marks.get(key),
            }
        )
    listed.sort(key=lambda t: (t["started"] or 0, t["id"]))
    return listed
