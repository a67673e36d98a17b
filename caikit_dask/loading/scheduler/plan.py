"""Where new replicas of a model go, and what to evict for them: a pure function.

The scheduler-side ``booking.reserve`` reads its workers and books into plain data,
asks ``plan_placement`` for a plan, and applies it. Keeping the decision apart from
the scheduler (as distributed's active memory manager keeps its policies apart from
the one place that acts) lets it be tested without a cluster.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# A booking loaded this long before a heartbeat arrived is counted in that heartbeat's
# process memory (the load finished before it was recorded; this covers the heartbeat's
# own transit).
SEEN_AFTER = 0.25
# A released model is taken as freed in a heartbeat this long after its release (its
# calls in flight drain first, then the worker hears of it).
FREED_AFTER = 2.0


class WorkerView(NamedTuple):
    """What placement needs to know of a worker.

    ``process``: its process memory (RSS) at its last heartbeat, ``seen`` (scheduler
    time); ``pause``: Dask's pause threshold as a fraction of ``memory_limit``;
    ``freeing``: bytes of models released there that the heartbeat may still count.
    """

    running: bool  # neither paused nor closing
    resources: dict[str, float]  # as the worker declared them
    memory_limit: int  # 0: no limit
    process: int = 0  # 0: not measured yet
    seen: float = 0.0
    pause: float = 1.0
    freeing: int = 0


class Plan(NamedTuple):
    """(worker, key) pairs to book, (worker, key) bookings to evict first; or, with
    nothing placed, ``report``: why nothing fits."""

    placed: list[tuple[str, str]]
    evicted: list[tuple[str, str]]
    report: dict[str, Any] | None = None


def plan_placement(
    keys: list[str],
    resources: dict[str, float],
    avoid: list[str],
    exclude: list[str],
    memory: dict[str, Any] | None,
    size: int,
    workers: dict[str, WorkerView],
    placements: dict[str, dict[str, Any]],
    bookings: dict[str, dict[str, Any]],
) -> Plan:
    """Up to one worker per key for a model needing ``resources`` and ``size`` bytes.

    Workers in ``exclude`` are never used, those in ``avoid`` only when no other fits,
    and the least loaded first. A model with resources gets distinct workers whose
    declared resources, less what ``placements`` holds there, still cover them. With
    ``memory`` (``{"model", "fraction", "evict"}``) a worker also needs room (see
    ``free``) for ``size``; with
    ``evict`` the least recently used loaded models of another model are evicted to
    make it. The books given are not changed.
    """
    placements = {address: dict(held) for address, held in placements.items()}
    bookings = {address: dict(held) for address, held in bookings.items()}
    excluded, avoided = set(exclude), set(avoid)
    running, paused = [], []
    for address, worker in workers.items():
        if address in excluded:
            continue
        if not worker.running:
            paused.append(address)
        elif _resources_fit(worker, placements.get(address) or {}, resources):
            running.append(address)
    placed: list[tuple[str, str]] = []
    evicted: list[tuple[str, str]] = []
    for key in keys:
        fresh = [a for a in running if a not in {w for w, _ in placed}]
        # A resource is never shared: distinct workers only.
        candidates = fresh if resources else fresh or running
        preferred = [a for a in candidates if a not in avoided] or candidates
        preferred.sort(key=lambda address: (len(placements.get(address) or {}), address))
        chosen, victims = _with_room(workers, bookings, preferred, size, memory)
        if chosen is None:
            break
        for victim in victims:
            (placements.get(chosen) or {}).pop(victim, None)
            bookings[chosen].pop(victim, None)
            evicted.append((chosen, victim))
        placements.setdefault(chosen, {})[key] = dict(resources)
        if memory:
            bookings.setdefault(chosen, {})[key] = {"bytes": size, "evictable": False}
        placed.append((chosen, key))
    if placed:
        return Plan(placed, evicted)
    considered = [address for address in workers if address not in excluded]
    return Plan(
        [],
        [],
        {
            "offered": {address: dict(workers[address].resources) for address in considered},
            "unbooked": {
                address: unbooked(workers[address], placements.get(address) or {})
                for address in considered
            },
            "free": {
                address: free(workers[address], bookings, address, memory) for address in considered
            },
            "paused": paused,
        },
    )


def unbooked(worker: WorkerView, held: dict[str, Any]) -> dict[str, float]:
    """The worker's declared resources less what the placement book holds there."""
    left = dict(worker.resources)
    for booked in held.values():
        for name, amount in (booked or {}).items():
            left[name] = left.get(name, 0) - amount
    return left


def _resources_fit(worker: WorkerView, held: dict[str, Any], resources: dict[str, float]) -> bool:
    left = unbooked(worker, held)
    return all(left.get(name, 0) >= amount for name, amount in resources.items())


def ceiling(worker: WorkerView, fraction: float) -> float:
    """The process memory placement fills a worker to: ``fraction`` of its pause threshold."""
    return worker.memory_limit * worker.pause * fraction


def free(worker: WorkerView, bookings: dict, address: str, memory: Any) -> float | None:
    """Room left on a worker for models (None: it has no memory limit).

    What the worker really holds counts, not only what was booked: the ceiling (see
    ``ceiling``) less its measured process memory (its own memory, its models and
    whatever they allocated after loading), less the models booked there that the
    measurement cannot show yet (loading, or loaded since its last heartbeat). Without a
    measurement, the bookings alone.
    """
    if not memory or not worker.memory_limit:
        return None
    held = (bookings.get(address) or {}).values()
    unseen = sum(b["bytes"] for b in held if not seen(worker, b))
    visible = sum(b["bytes"] for b in held) - unseen
    in_process = max(worker.process - worker.freeing, visible)
    return ceiling(worker, memory["fraction"]) - in_process - unseen


def seen(worker: WorkerView, booking: dict) -> bool:
    """Whether the worker's last measured process memory includes this model."""
    return bool(booking.get("loaded")) and booking.get("loaded_at", 0) < worker.seen - SEEN_AFTER


def _with_room(
    workers: dict[str, WorkerView],
    bookings: dict,
    preferred: list[str],
    size: int,
    memory: Any,
) -> tuple[str | None, list[str]]:
    """The first preferred worker with room, else (evicting) the one that evicts least."""
    plans = []
    for address in preferred:
        room = free(workers[address], bookings, address, memory)
        if room is None or room >= size:
            return address, []
        if not memory.get("evict"):
            continue
        evictable = sorted(
            (booking["used"], key, booking["bytes"])
            for key, booking in (bookings.get(address) or {}).items()
            if booking["evictable"] and booking["loaded"] and booking["model"] != memory["model"]
        )
        victims = []
        for used, key, taken in evictable:
            if room >= size:
                break
            victims.append((used, key))
            room += taken
        if room >= size:
            plans.append((len(victims), max(used for used, _ in victims), address, victims))
    if not plans:
        return None, []
    _, _, address, victims = min(plans)
    return address, [key for _, key in victims]
