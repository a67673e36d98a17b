"""Where a model's actors go: workers booked on the scheduler, in one step per change.

See ``scheduler.booking`` for the books themselves. Here the caller's side: each load,
replacement or release is one ``run_on_scheduler`` call, so concurrent loads of
``{GPU: 1}`` models never share the one GPU of a worker, and concurrent releases
never leave a GPU counted as taken.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import NamedTuple

from distributed import Client

from ...errors import DaskBackendError, error, log
from ...resources import describe_missing, describe_taken
from ..scheduler import booking as on_scheduler
from .memory import MemoryNeed, describe_no_room


class Booking(NamedTuple):
    """What ``book_workers`` got: (worker, actor key) pairs, or why nothing fits.

    ``evicted`` names the (worker, actor key) pairs unloaded to make room.
    """

    placed: list[tuple[str, str]]
    reason: str | None
    evicted: tuple[tuple[str, str], ...] = ()

    def or_raise(self) -> list[tuple[str, str]]:
        """The pairs; raises, naming what is missing, when nothing fits."""
        if not self.placed:
            error("<DSK50000001E>", DaskBackendError(f"Cannot place the model: {self.reason}."))
        return self.placed


def book_workers(
    client: Client,
    module_id: str,
    count: int,
    resources: dict[str, float],
    avoid: Iterable[str] = (),
    exclude: Iterable[str] = (),
    memory: MemoryNeed | None = None,
) -> Booking:
    """Up to ``count`` (worker, actor key) pairs, booked for new actors of ``module_id``.

    Workers in ``exclude`` are never used, those in ``avoid`` only if no other fits.
    With ``memory``, only workers with room for the model (evicting if its policy
    says so). Release what goes unused with ``release_placements``.
    """
    keys = [f"caikit-model-{module_id}-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    outcome = client.run_on_scheduler(
        on_scheduler.reserve,
        keys,
        dict(resources),
        sorted(avoid),
        sorted(exclude),
        memory.request() if memory is not None else None,
    )
    if "placed" in outcome:
        return Booking(
            [(worker, key) for worker, key in outcome["placed"]],
            None,
            tuple((worker, key) for worker, key in outcome["evicted"]),
        )
    offered = outcome["offered"]
    if resources and not any(_covers(o, resources) for o in offered.values()):
        return Booking([], describe_missing(offered, resources))
    if resources and not any(_covers(o, resources) for o in outcome["unbooked"].values()):
        return Booking([], describe_taken(resources, len(offered)))
    if memory is not None and offered:
        return Booking([], describe_no_room(outcome, memory.policy))
    if resources:
        return Booking([], describe_missing(offered, resources))
    return Booking([], "the cluster has no (other) workers")


def _covers(offered: dict[str, float], wanted: dict[str, float]) -> bool:
    return all(offered.get(name, 0) >= amount for name, amount in wanted.items())


def record_loaded(client: Client, sizes: list[tuple[str, str, int]]) -> None:
    """Book what each load measured (``(worker, key, bytes)``, 0: not measured), and
    remember it for the model's next load."""
    entries = [[worker, key, int(size) or None] for worker, key, size in sizes]
    if entries:
        client.run_on_scheduler(on_scheduler.loaded, entries)


def keep_resident(client: Client, keys: list[str]) -> None:
    """Exempt these actors from eviction (a published model's)."""
    client.run_on_scheduler(on_scheduler.keep, keys)


def push_last_calls(client: Client, stamps: dict[str, float]) -> None:
    """Record when models were last called (``{actor key: time}``), for eviction."""
    client.run_on_scheduler(on_scheduler.touch, stamps)


def release_placements(client: Client, placements: Iterable[tuple[str, str]]) -> None:
    """Drop (worker, actor key) bookings; quietly, as cleanup on a closing or lost connection."""
    placements = [[worker, key] for worker, key in placements]
    if not placements:
        return
    try:
        client.run_on_scheduler(on_scheduler.release, placements)
    except Exception as err:  # noqa: BLE001 - cleanup on a closing or lost connection
        log.debug("Could not release placements %s: %s", placements, err)
