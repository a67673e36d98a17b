"""The scheduler plugin behind the operator's view: recent events, metrics, the page.

Registered once per scheduler by every caikit-dask client (``install``), idempotent. It
keeps the last evictions and moves it hears (the books forget an evicted model at once),
adds the per-worker gauges to the scheduler's ``/metrics`` and the ``/caikit-dask`` routes
to its HTTP server. Sent by value (see the package).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from ..dask_internals import add_http_routes
from ..loading.scheduler.books import EVICTIONS, MOVED
from .dashboard import routes
from .prometheus import register_collector, unregister_collector
from .snapshot import cluster_status

RECENT = 50  # evictions and moves kept for the page


class OperatorView(SchedulerPlugin):
    name = "caikit-dask-operator-view"
    idempotent = True  # one per scheduler, whichever process registers first

    def __init__(self) -> None:
        self.scheduler: Any = None
        self.evictions: deque = deque(maxlen=RECENT)
        self.moves: deque = deque(maxlen=RECENT)
        self.evicted_total = 0
        self.moved_total = 0
        self._collector: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._collector = register_collector(self)
        add_http_routes(scheduler, routes(self))

    async def close(self) -> None:
        unregister_collector(self._collector, self)
        self._collector = None

    def log_event(self, topic: str, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        now = time.time()
        if topic == EVICTIONS:
            names = list(msg.get("names") or ())
            for index, (worker, key) in enumerate(msg.get("evicted") or ()):
                self.evicted_total += 1
                self.evictions.append(
                    {
                        "time": now,
                        "worker": worker,
                        "key": key,
                        "model": names[index] if index < len(names) else "",
                        "for": msg.get("for") or "",
                    }
                )
        elif topic == MOVED:
            self.moved_total += 1
            self.moves.append({"time": now, **{k: msg.get(k) for k in ("model", "from", "to")}})

    def status(self, trainings: bool = True) -> dict[str, Any]:
        """The cluster now (see ``snapshot``), with the recent evictions and moves."""
        recent = {"evictions": list(self.evictions)[::-1], "moves": list(self.moves)[::-1]}
        return cluster_status(self.scheduler, recent, trainings)


def status_of(dask_scheduler: Any) -> dict[str, Any]:
    """What ``caikit-dask status`` shows, for ``run_on_scheduler``; without the plugin
    (no caikit-dask client connected yet) the same, with no recent events."""
    view = dask_scheduler.plugins.get(OperatorView.name)
    if view is not None:
        return view.status()
    return cluster_status(dask_scheduler)
