"""Outcomes of calls running in an actor's thread pool, and waiting for them cheaply.

Chaining each pool job to an asyncio future wakes the worker's event loop once per
call (a syscall each), which was most of the worker's cost per trivial call.
Here a pool thread stores its outcome and wakes the loop only when a waiter's
condition is met: the first of its calls, or all of them, being done.
"""

from __future__ import annotations

import asyncio
import threading


class _Waiter:
    __slots__ = ("tickets", "missing", "future")

    def __init__(self, tickets: set[int], missing: int, future: asyncio.Future):
        self.tickets, self.missing, self.future = tickets, missing, future


class Outcomes:
    """Pickled outcomes by ticket, filled by pool threads, taken by the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._done: dict[int, bytes] = {}
        self._running: set[int] = set()
        self._waiters: list[_Waiter] = []

    def started(self, ticket: int) -> None:
        with self._lock:
            self._running.add(ticket)

    def finished(self, ticket: int, outcome: bytes) -> None:
        """In a pool thread: store the outcome; wake the loop only for a satisfied waiter."""
        ready = []
        with self._lock:
            self._running.discard(ticket)
            self._done[ticket] = outcome
            for waiter in self._waiters:
                if ticket in waiter.tickets:
                    waiter.missing -= 1
                    if waiter.missing == 0:
                        ready.append(waiter)
            for waiter in ready:
                self._waiters.remove(waiter)
        for waiter in ready:
            self._loop.call_soon_threadsafe(_resolve, waiter.future)

    async def wait(self, tickets: list[int], count: int, timeout: float | None) -> None:
        """Until ``count`` of ``tickets`` are done, or ``timeout`` seconds pass."""
        with self._lock:
            missing = count - sum(1 for ticket in tickets if ticket not in self._running)
            if missing <= 0:
                return
            waiter = _Waiter(set(tickets), missing, self._loop.create_future())
            self._waiters.append(waiter)
        timer = None if timeout is None else self._loop.call_later(timeout, _resolve, waiter.future)
        try:
            await waiter.future
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def take(self, ticket: int) -> bytes | None:
        """The outcome, once (``None`` while still running); unknown tickets raise KeyError."""
        with self._lock:
            if ticket in self._running:
                return None
            return self._done.pop(ticket)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
