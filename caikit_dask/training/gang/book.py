"""On the scheduler: the gang book, a scheduler plugin shipped by value.

It keeps, per gang (one attempt of one training with ``world_size`` > 1): the
workers it holds, which ranks have started, rank 0's port, how each rank ended,
and why the gang was aborted. Drivers and ranks call it through one scheduler
handler (``GANG_HANDLER``, ``action=...``); they wait on it by long polls that
return as soon as the gang changes. Every change happens in one step of the
scheduler's event loop, so admission, the start barrier and aborts never race.

What it watches by itself, so that nothing depends on a client staying alive:
a rank's task failing, a rank's worker leaving, the driver's task leaving its
worker (the driver's worker died, or the training was deleted), a worker
freeing up (admission is tried again). A worker stays held until its rank's code
says it ended (or the worker leaves): the scheduler forgets a cancelled task while
the worker may still run it.

Only distributed, the standard library and modules also sent by value are
imported here: the scheduler needs no caikit-dask.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import cloudpickle
from distributed.diagnostics.plugin import SchedulerPlugin

from ...dask_internals import add_scheduler_handler
from . import admission

GANG_BOOK = "caikit-dask-gang-book"  # the plugin's name (= events.GANG_BOOK)
GANG_HANDLER = "caikit_dask_gang"  # the scheduler handler (= events.GANG_HANDLER)
CANCELED_KEPT = 10_000  # canceled training keys remembered (a retried driver stops)
ADMIT_EVERY = 0.5  # seconds between admission attempts while a gang waits (a safety net)


class GangBook(SchedulerPlugin):
    """Admission, start barrier, ends and aborts of every gang on this scheduler."""

    name = GANG_BOOK

    def __init__(self) -> None:
        self.scheduler: Any = None
        self.gangs: dict[str, dict[str, Any]] = {}
        self.queue: dict[str, None] = {}  # gang ids waiting for workers, oldest first
        self.held: dict[str, str] = {}  # worker address -> gang id holding it
        self.rank_keys: dict[str, tuple[str, int]] = {}  # rank task key -> (gang id, rank)
        self.drivers: dict[str, str] = {}  # training (driver task) key -> its gang now
        self.canceled: dict[str, None] = {}  # training keys canceled
        self._admission_due = False
        self._ticker: asyncio.Task | None = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        add_scheduler_handler(scheduler, GANG_HANDLER, self.handle)
        self._ticker = asyncio.ensure_future(self._keep_admitting())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    # -- the handler -----------------------------------------------------------------------

    async def handle(self, action: str, **kwargs: Any) -> dict[str, Any]:
        """One entry point for drivers, ranks and clients: ``action`` names the step."""
        if action == "queue":
            return await self.queue_gang(**kwargs)
        if action == "watch":
            return await self.watch(**kwargs)
        steps = {
            "arrive": self.arrive,
            "end": self.end,
            "abort": self.abort,
            "release": self.release,
            "cancel": self.cancel,
            "endpoints": self.endpoints,
        }
        return steps[action](**kwargs)

    # -- steps -----------------------------------------------------------------------------

    async def queue_gang(
        self,
        gang_id: str,
        training: str,
        size: int,
        resources: dict[str, float],
        rank_keys: list[str],
        timeout: float,
    ) -> dict[str, Any]:
        """Queue the gang (once) and wait up to ``timeout`` for workers; its snapshot."""
        if training in self.canceled:
            return {"canceled": True}
        gang = self.gangs.get(gang_id)
        if gang is None:
            gang = self.gangs[gang_id] = _new_gang(gang_id, training, size, resources, rank_keys)
            for rank, key in enumerate(rank_keys):
                self.rank_keys[key] = (gang_id, rank)
            self.queue[gang_id] = None
            self.drivers[training] = gang_id
            self._admit()
        if gang["workers"] is None and not gang["aborted"]:
            await _changed(gang, timeout)
        return self.snapshot(gang)

    async def watch(self, gang_id: str, version: int, timeout: float) -> dict[str, Any]:
        """The gang's snapshot once it differs from ``version`` (or after ``timeout``)."""
        gang = self.gangs.get(gang_id)
        if gang is None:
            return {"gone": True}
        if gang["version"] == version:
            await _changed(gang, timeout)
        return self.snapshot(gang)

    def arrive(self, gang_id: str, rank: int, worker: str, port: int | None = None) -> dict:
        """Rank ``rank`` runs on ``worker`` (rank 0 found ``port`` free there)."""
        gang = self.gangs.get(gang_id)
        if gang is None:
            return {"gone": True}
        if not gang["aborted"]:
            gang["arrived"][rank] = worker
            if rank == 0:
                gang["port"] = port
            if all(gang["arrived"]):
                gang["started"] = True
            _bump(gang)
        return self.snapshot(gang)

    def end(
        self, gang_id: str, rank: int, outcome: str, error: str | None = None
    ) -> dict[str, Any]:
        """Rank ``rank``'s code ended: ``finished``, ``failed`` (with ``error``), ``stopped``."""
        gang = self.gangs.get(gang_id)
        if gang is None:
            return {"gone": True}
        worker = gang["workers"][rank] if gang["workers"] else None
        gang["ended"][rank] = gang["ended"][rank] or outcome
        if outcome == "failed":
            gang["failures"].append({"rank": rank, "worker": worker, "error": error})
            self._abort(gang, f"rank {rank} failed on {worker}: {error}")
        self._free(worker, gang_id)
        _bump(gang)
        self._forget_if_done(gang)
        return {"ok": True}

    def abort(self, gang_id: str, reason: str, unless_started: bool = False) -> dict:
        """Stop the gang (its ranks stop); with ``unless_started``, only if it has not."""
        gang = self.gangs.get(gang_id)
        if gang is None:
            return {"gone": True}
        if not (unless_started and gang["started"]):
            self._abort(gang, reason)
        return self.snapshot(gang)

    def release(self, gang_id: str) -> dict[str, Any]:
        """The driver is done with the gang: workers whose ranks ended are free again."""
        gang = self.gangs.get(gang_id)
        if gang is not None:
            self._release(gang)
        return {"ok": True}

    def cancel(self, training: str) -> dict[str, Any]:
        """The training is canceled: its gang stops, and a rerun of its driver stops too."""
        self.canceled[training] = None
        while len(self.canceled) > CANCELED_KEPT:
            del self.canceled[next(iter(self.canceled))]
        gang = self.gangs.get(self.drivers.get(training, ""))
        if gang is not None:
            gang["canceled"] = True
            self._abort(gang, "the training was canceled")
        return {"ok": True}

    def endpoints(self) -> dict[str, Any]:
        """Every address Dask listens on: the scheduler's, each worker's and nanny's (what
        a stopped rank must not take for its training's connections, ``sockets``)."""
        scheduler = self.scheduler
        addresses = [scheduler.address, *getattr(scheduler, "listen_addresses", ())]
        for ws in scheduler.workers.values():
            addresses += [ws.address] + ([ws.nanny] if ws.nanny else [])
        return {"addresses": addresses}

    def snapshot(self, gang: dict[str, Any]) -> dict[str, Any]:
        """What drivers and ranks read: plain data."""
        tasks = self.scheduler.tasks
        running = [
            rank
            for rank, key in enumerate(gang["rank_keys"])
            if getattr(tasks.get(key), "state", None) == "processing"
        ]
        position = list(self.queue).index(gang["id"]) if gang["id"] in self.queue else None
        return {
            key: gang[key]
            for key in (
                "version",
                "workers",
                "arrived",
                "port",
                "ended",
                "failures",
                "lost",
                "aborted",
                "started",
                "canceled",
                "matching",
            )
        } | {"running": running, "position": position}

    # -- what the scheduler tells every plugin ---------------------------------------------

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start != "processing" or finish == "processing":
            return
        if self.queue:
            self._admit_soon()  # a task left a worker: room, perhaps
        if key in self.rank_keys:
            self._rank_left(key, finish, kwargs)
        elif key in self.drivers:
            gang = self.gangs.get(self.drivers.pop(key))
            if gang is not None and not gang["released"]:
                self._abort(gang, "its driver task stopped (its worker left, or it was deleted)")
                self._release(gang)

    def add_worker(self, scheduler: Any, worker: str) -> None:
        if self.queue:
            self._admit_soon()

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        for gang in list(self.gangs.values()):
            workers = gang["workers"] or []
            if worker in workers:
                rank = workers.index(worker)
                if gang["ended"][rank] is None:
                    gang["ended"][rank] = "lost"
                    gang["lost"].append({"rank": rank, "worker": worker})
                    self._abort(gang, f"rank {rank}'s worker {worker} left the cluster")
                _bump(gang)
                self._forget_if_done(gang)
        self.held.pop(worker, None)
        if self.queue:
            self._admit_soon()

    # -- inside the book -------------------------------------------------------------------

    def _rank_left(self, key: Any, finish: str, details: dict[str, Any]) -> None:
        """A rank's task left its worker in the scheduler's view."""
        gang_id, rank = self.rank_keys[key]
        gang = self.gangs.get(gang_id)
        if gang is None:
            return
        worker = gang["workers"][rank] if gang["workers"] else None
        if finish == "erred" and gang["ended"][rank] is None:
            # It raised before its code could say so (e.g. it could not unpickle its input).
            error = details.get("exception_text") or "its task failed"
            gang["ended"][rank] = "failed"
            gang["failures"].append({"rank": rank, "worker": worker, "error": error})
            self._abort(gang, f"rank {rank} failed on {worker}: {error}")
        if gang["arrived"][rank] is None:
            self._free(worker, gang_id)  # its code never ran: nothing can still run there
        _bump(gang)
        self._forget_if_done(gang)

    def _abort(self, gang: dict[str, Any], reason: str) -> None:
        if not gang["aborted"]:
            gang["aborted"] = reason
            self.queue.pop(gang["id"], None)
            _bump(gang)

    def _release(self, gang: dict[str, Any]) -> None:
        gang["released"] = True
        self.queue.pop(gang["id"], None)
        if self.drivers.get(gang["training"]) == gang["id"]:
            del self.drivers[gang["training"]]
        for rank, worker in enumerate(gang["workers"] or []):
            if gang["arrived"][rank] is None or gang["ended"][rank] is not None:
                self._free(worker, gang["id"])
        self._forget_if_done(gang)
        self._admit_soon()

    def _free(self, worker: str | None, gang_id: str) -> None:
        if worker is not None and self.held.get(worker) == gang_id:
            del self.held[worker]
            self._admit_soon()

    def _forget_if_done(self, gang: dict[str, Any]) -> None:
        """A released gang none of whose workers is held any more is forgotten."""
        if gang["released"] and gang["id"] not in self.held.values():
            self.gangs.pop(gang["id"], None)
            for key in gang["rank_keys"]:
                self.rank_keys.pop(key, None)

    def _admit_soon(self) -> None:
        if not self._admission_due:
            self._admission_due = True
            asyncio.get_running_loop().call_soon(self._admit)

    def _admit(self) -> None:
        """Admit the waiting gangs that fit now, oldest first."""
        self._admission_due = False
        if not self.queue:
            return
        workers = [self._describe(ws) for ws in self.scheduler.workers.values()]
        for gang_id in list(self.queue):
            gang = self.gangs[gang_id]
            gang["matching"] = admission.matching(workers, gang["resources"])
            chosen = admission.choose_workers(
                workers, gang["size"], gang["resources"], set(self.held)
            )
            if chosen is None:
                continue
            del self.queue[gang_id]
            gang["workers"] = chosen
            for worker in chosen:
                self.held[worker] = gang_id
            _bump(gang)

    def _describe(self, ws: Any) -> dict[str, Any]:
        return {
            "address": ws.address,
            "host": ws.host,
            "pid": ws.pid,
            "resources": dict(ws.resources or {}),
            "used": dict(ws.used_resources or {}),
            "busy": len(ws.processing) - len(ws.long_running),
            "nthreads": ws.nthreads,
            "running": ws in self.scheduler.running,
        }

    async def _keep_admitting(self) -> None:
        """A worker's thread freeing up tells no plugin: look again while gangs wait."""
        while True:
            await asyncio.sleep(ADMIT_EVERY)
            with contextlib.suppress(Exception):
                self._admit()


def _new_gang(
    gang_id: str, training: str, size: int, resources: dict[str, float], rank_keys: list[str]
) -> dict[str, Any]:
    return {
        "id": gang_id,
        "training": training,
        "size": size,
        "resources": dict(resources),
        "rank_keys": list(rank_keys),
        "workers": None,
        "arrived": [None] * size,
        "port": None,
        "ended": [None] * size,
        "failures": [],
        "lost": [],
        "aborted": None,
        "started": False,
        "canceled": False,
        "released": False,
        "matching": 0,
        "version": 0,
        "changed": asyncio.Event(),
    }


def _bump(gang: dict[str, Any]) -> None:
    """A new version of the gang: wake whoever waits on the old one."""
    gang["version"] += 1
    gang["changed"].set()
    gang["changed"] = asyncio.Event()


async def _changed(gang: dict[str, Any], timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(gang["changed"].wait(), timeout)


def count_matching(resources: dict[str, float], *, dask_scheduler: Any) -> int:
    """How many worker processes could run a rank needing ``resources`` (from
    ``Client.run_on_scheduler``): running, declaring them, one per process."""
    workers = [
        {
            "host": ws.host,
            "pid": ws.pid,
            "resources": dict(ws.resources or {}),
            "running": ws in dask_scheduler.running,
        }
        for ws in dask_scheduler.workers.values()
    ]
    return admission.matching(workers, resources)


async def cancel_training(training: str, *, dask_scheduler: Any) -> None:
    """Mark the training canceled in the book (made here if no gang ran yet), from
    ``Client.run_on_scheduler``: a driver that has not started yet stops when it does."""
    book = dask_scheduler.plugins.get(GANG_BOOK)
    if book is None:
        book = GangBook()
        await book.start(dask_scheduler)
        dask_scheduler.add_plugin(book, name=GANG_BOOK)
    book.cancel(training)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(admission)
