"""On the scheduler: a worker being retired first lets its models move elsewhere.

Dask refuses to retire a worker that holds an actor: its ``RetireWorker`` policy
gives up at once, and an adaptive cluster then closes the worker anyway, killing
the calls on it. This plugin wraps the scheduler's ``retire_workers`` (the one
entry of ``client.retire_workers``, adaptive scale-down, a worker closing
gracefully, and the HTTP API dask-kubernetes uses): before Dask's own retirement
runs, a worker holding our models is marked ``closing_gracefully`` (so no new
placement chooses it), the leaving models are announced on the ``RETIRING`` topic,
and the retirement waits, woken by task transitions, until their owners have
placed replacements and released the old actors (see ``upkeep.leaving``), or said on
the ``STAYS`` topic that they cannot (no other worker has room). Dask's retirement
then runs as usual: it proceeds when the worker holds no actor, and refuses (the
worker keeps serving) when one stayed. A published model stays where it is (other
processes call its actors): Dask refuses to retire its worker, as before.

Sent by value (see the package): only distributed and the standard library.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from distributed.core import Status
from distributed.diagnostics.plugin import SchedulerPlugin

from ...dask_internals import published_datasets, wrap_scheduler_method
from .books import PLACEMENTS, RETIRING, STAYS

_CLOSE_KWARGS = ("close_workers", "remove", "stimulus_id")


class MoveModelsBeforeRetiring(SchedulerPlugin):
    """Hold a worker's retirement until the models placed on it have moved."""

    name = "caikit-dask-retiring"
    idempotent = True  # one per scheduler, whichever process registers first

    def __init__(self, timeout: float):
        self.timeout = timeout  # after it, Dask's retirement runs (and refuses the actors)
        self.scheduler: Any = None
        self._waiting = 0
        self._changed: asyncio.Event | None = None
        self._stays: set[str] = set()  # actor keys their owners could not move

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._changed = asyncio.Event()
        wrap_scheduler_method(scheduler, "retire_workers", self._moving_models_first)

    def _moving_models_first(self, original: Any) -> Any:
        scheduler = self.scheduler

        async def retire_workers(workers: Any = None, **kwargs: Any) -> Any:
            names = kwargs.get("names")
            if names is None and workers is None:
                # Dask would pick the workers itself: pick them now, the same way.
                chosen = {k: v for k, v in kwargs.items() if k not in _CLOSE_KWARGS}
                kwargs = {k: v for k, v in kwargs.items() if k in _CLOSE_KWARGS}
                workers = scheduler.workers_to_close(**chosen)
            await self.move_models_first(names, workers)
            return await original(workers, **kwargs)

        return retire_workers

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if self._waiting and finish in ("released", "forgotten"):
            self._changed.set()

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == STAYS and self._waiting:
            self._stays.add(str(msg.get("key")))
            self._changed.set()

    def _leaving(self, names: Any, workers: Any) -> dict[str, list[str]]:
        """Actor keys of our models on each worker to retire."""
        scheduler = self.scheduler
        if names is not None:
            wanted = {str(name) for name in names}
            addresses = [a for a, ws in scheduler.workers.items() if str(ws.name) in wanted]
        else:
            addresses = [a for a in workers or () if a in scheduler.workers]
        book = scheduler.task_metadata.get(PLACEMENTS) or {}
        published = self._published()
        leaving = {}
        for address in addresses:
            ours = set(book.get(address) or ()) - published
            keys = [str(ts.key) for ts in scheduler.workers[address].actors if ts.key in ours]
            if keys:
                leaving[address] = keys
        return leaving

    def _published(self) -> set[Any]:
        """Keys a published dataset holds: other processes use those actors, they stay."""
        datasets = published_datasets(self.scheduler)
        return {key for dataset in datasets.values() for key in dataset.get("keys") or ()}

    def _still_held(self, leaving: dict[str, list[str]]) -> bool:
        """Whether a worker still listed holds one of these actors that can move."""
        for address, keys in leaving.items():
            ws = self.scheduler.workers.get(address)
            moving = set(keys) - self._stays
            if ws is not None and {str(ts.key) for ts in ws.actors} & moving:
                return True
        return False

    async def move_models_first(self, names: Any, workers: Any) -> None:
        scheduler = self.scheduler
        leaving = self._leaving(names, workers)
        if not leaving:
            return
        stimulus_id = f"caikit-dask-retiring-{time.time()}"
        before = {}
        for address in leaving:
            ws = scheduler.workers[address]
            before[address] = ws.status
            scheduler.handle_worker_status_change(Status.closing_gracefully, ws, stimulus_id)
        scheduler.log_event(RETIRING, {"workers": leaving})
        deadline = time.monotonic() + self.timeout
        self._waiting += 1
        try:
            while self._still_held(leaving):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        finally:
            self._waiting -= 1
            self._stays -= {key for keys in leaving.values() for key in keys}
        for address, status in before.items():
            # Dask's retirement sets closing_gracefully itself, and restores this if
            # it refuses.
            ws = scheduler.workers.get(address)
            if ws is not None and ws.status == Status.closing_gracefully:
                scheduler.handle_worker_status_change(status, ws, stimulus_id)
