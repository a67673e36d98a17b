"""Workers whose memory grows toward Dask's pause threshold while they serve.

Placement keeps a worker's process memory under its ceiling (see ``scheduler.plan``),
but a model may keep allocating after its load (a cache). Each health-check round asks
the scheduler to relieve such workers (``scheduler.booking.relieve``): models with
``eviction: lru`` are evicted there, least recently called first, before Dask pauses
the worker (the owners hear of it as of any eviction); a worker with nothing to evict
takes no more models (it has no room) and is logged once, until it is back under.
"""

from __future__ import annotations

import threading
from typing import Any

from dask.utils import format_bytes

from ...errors import log
from ..scheduler import booking as on_scheduler

_lock = threading.Lock()
_over: set[str] = set()  # workers logged as over their ceiling, until they are not


def relieve(client: Any) -> None:
    """One round: evict on workers over their ceiling, log those that stay over."""
    try:
        outcome = client.run_on_scheduler(on_scheduler.relieve)
    except Exception as err:  # noqa: BLE001 - scheduler away: the next round
        log.debug("Could not check the workers' memory: %s", err)
        return
    evicted = {worker for worker, _ in outcome.get("evicted") or ()}
    over = outcome.get("over") or {}
    with _lock:
        new = [w for w in over if w not in _over and w not in evicted]
        _over.intersection_update(over)
        _over.update(new)
    for worker in new:
        process, ceiling = over[worker]
        log.warning(
            "<DSK50000033W>",
            "Worker %s holds %s of process memory, above the %s that memory_fraction lets "
            "models fill (Dask pauses it at distributed.worker.memory.pause); no more models "
            "are placed there, and it holds none that eviction: lru lets it evict",
            worker,
            format_bytes(process),
            format_bytes(ceiling),
        )
    for worker in sorted(evicted):
        log.info(
            "<DSK50000034I>",
            "Worker %s grew above the memory models may fill: evicted its least recently "
            "called models there before Dask pauses it",
            worker,
        )
