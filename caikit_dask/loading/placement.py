"""Where a model's actors go: workers booked on the scheduler, in one step per change.

See ``scheduler_side`` for the book itself. Here the caller's side: each load,
replacement or release is one ``run_on_scheduler`` call, so concurrent loads of
``{GPU: 1}`` models never share the one GPU of a worker, and concurrent releases
never leave a GPU counted as taken.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import cloudpickle
from distributed import Client

from ..errors import DaskBackendError, error, log
from ..resources import describe_missing
from . import scheduler_side
from .scheduler_side import PLACEMENTS

__all__ = ["PLACEMENTS", "book_workers", "release_placements", "try_book_workers"]

# The scheduler runs the bookkeeping functions without importing caikit-dask.
cloudpickle.register_pickle_by_value(scheduler_side)


def book_workers(
    client: Client,
    module_id: str,
    count: int,
    resources: dict[str, float],
    avoid: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """Up to ``count`` (worker, actor key) pairs, booked for new actors of ``module_id``.

    Workers in ``exclude`` are never used, those in ``avoid`` only if no other fits.
    Release what goes unused with ``release_placements``. Raises, naming what is
    missing, when no worker fits.
    """
    booked, reason = try_book_workers(client, module_id, count, resources, avoid, exclude)
    if not booked:
        error("<DSK50000001E>", DaskBackendError(f"Cannot place the model: {reason}."))
    return booked


def try_book_workers(
    client: Client,
    module_id: str,
    count: int,
    resources: dict[str, float],
    avoid: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> tuple[list[tuple[str, str]], str | None]:
    """``book_workers`` for background repairs: no bookings and the reason instead of raising."""
    keys = [f"caikit-model-{module_id}-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    outcome = client.run_on_scheduler(
        scheduler_side.reserve, keys, dict(resources), sorted(avoid), sorted(exclude)
    )
    if "offered" in outcome:
        if resources:
            return [], describe_missing(outcome["offered"], resources)
        return [], "the cluster has no (other) workers"
    return [(worker, key) for worker, key in outcome["placed"]], None


def release_placements(client: Client, placements: Iterable[tuple[str, str]]) -> None:
    """Drop (worker, actor key) bookings; quietly, as cleanup on a closing or lost connection."""
    placements = [[worker, key] for worker, key in placements]
    if not placements:
        return
    try:
        client.run_on_scheduler(scheduler_side.release, placements)
    except Exception as err:  # noqa: BLE001 - cleanup on a closing or lost connection
        log.debug("Could not release placements %s: %s", placements, err)
