"""The scheduler plugin behind the operator's view: recent moves, metrics, the page.

Registered once per scheduler by every caikit-dask client (``install``), idempotent. It
keeps the last moves off retiring workers it hears of (the books keep the evictions
themselves), adds the per-worker gauges to the scheduler's ``/metrics`` and the
``/caikit-dask`` routes to its HTTP server. Sent by value (see the package).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from ..dask_internals import add_http_routes
from ..loading.scheduler.books import MOVED
from .dashboard import routes
from .prometheus import register_collector, unregister_collector
from .snapshot import cluster_status, evictions

RECENT = 50  # moves kept for the page


class OperatorView(SchedulerPlugin):
    name = "caikit-dask-operator-view"
    idempotent = True  # one per scheduler, whichever process registers first

    def __init__(self) -> None:
        self.scheduler: Any = None
        self.moves: deque = deque(maxlen=RECENT)
        self.moved_total = 0
        self._collector: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._collector = register_collector(self)
        add_http_routes(scheduler, routes(self))

    async def close(self) -> None:
        unregister_collector(self._collector, self)
        self._collector = None

    @property
    def evicted_total(self) -> int:
        return evictions(self.scheduler)[0]

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == MOVED and isinstance(msg, dict):
            self.moved_total += 1
            moved = {k: msg.get(k) for k in ("model", "from", "to")}
            self.moves.append({"time": time.time(), **moved})

    def status(self, trainings: bool = True) -> dict[str, Any]:
        """The cluster now (see ``snapshot``), with the recent moves."""
        return cluster_status(self.scheduler, list(self.moves)[::-1], trainings)


def status_of(dask_scheduler: Any) -> dict[str, Any]:
    """What ``caikit-dask status`` shows, for ``run_on_scheduler``; without the plugin
    (no caikit-dask client connected yet) the same, with no recent moves."""
    view = dask_scheduler.plugins.get(OperatorView.name)
    if view is not None:
        return view.status()
    return cluster_status(dask_scheduler)
