"""Whether a worker still answers: one ping in flight per worker, and how long it waited.

A frozen worker (SIGSTOP, a stalled VM, a hung driver, a long GC pause) stays
registered with the scheduler for ``distributed.scheduler.worker-ttl`` (minutes), so
being listed says nothing; its event loop not answering does. Pings are answered on
the worker's event loop (as its heartbeats are), never behind the model's calls. At
most one ping per worker is in flight, so a frozen worker does not pile them up: its
silence is the age of that one unanswered ping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from ...dask_internals import actor_rpc

Ping = Callable[[], Coroutine[Any, Any, Any]]


class Liveness:
    """Pings in flight by worker address, and when each worker last answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[float, Future]] = {}  # worker -> (sent at, ping)
        self._heard: dict[str, float] = {}  # worker -> when its last answered ping was sent

    def silence(self, client: Any, worker: str, ping: Ping | None = None) -> float:
        """Seconds the worker's ping in flight has gone unanswered (0: none in flight).

        Sends a ping when none is in flight: ``ping()`` (a coroutine run on the client's
        event loop, e.g. an actor's ``ping``), by default the worker's ``identity``. A
        ping that fails (the worker is gone) counts as answered: being gone is for the
        scheduler's worker list to say.
        """
        now = time.monotonic()
        with self._lock:
            pending = self._pending.get(worker)
            if pending is not None and pending[1].done():
                del self._pending[worker]
                self._heard[worker] = pending[0]
                pending = None
            if pending is not None:
                return now - pending[0]
            coroutine = ping() if ping is not None else _identity(client, worker)
            try:
                future = asyncio.run_coroutine_threadsafe(coroutine, client.loop.asyncio_loop)
            except RuntimeError:  # the client's loop is closed: nothing to say
                coroutine.close()
                return 0.0
            future.add_done_callback(_quiet)
            self._pending[worker] = (now, future)
            return 0.0

    def heard_since(self, worker: str, since: float) -> bool:
        """Whether ``worker`` answered a ping sent after ``since`` (``time.monotonic()``)."""
        with self._lock:
            pending = self._pending.get(worker)
            if pending is not None and pending[1].done() and pending[0] > since:
                return True
            return self._heard.get(worker, float("-inf")) > since

    def forget(self, workers: set[str]) -> None:
        """Drop what is known of workers that left the cluster."""
        with self._lock:
            for worker in workers:
                self._pending.pop(worker, None)
                self._heard.pop(worker, None)

    def known(self) -> set[str]:
        with self._lock:
            return set(self._pending) | set(self._heard)


async def _identity(client: Any, worker: str) -> Any:
    return await actor_rpc(client, worker).identity()


def actor_ping(client: Any, worker: str, key: str, function: str) -> Ping:
    """A ping of the actor ``key`` (its ``function``, answered on the worker's loop)."""

    async def ping() -> Any:
        return await actor_rpc(client, worker).actor_execute(
            actor=key, function=function, args=[], kwargs={}
        )

    return ping


def _quiet(future: Future) -> None:
    """Retrieve a ping's exception, so a failed ping is not logged as never retrieved."""
    if not future.cancelled():
        future.exception()


liveness = Liveness()
