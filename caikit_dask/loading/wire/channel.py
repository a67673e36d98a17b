"""The call path from a caller's thread to one replica's actor.

A plain Dask actor call costs two hops through the client's event loop and
serialises each argument; concurrent calls each pay a round trip. Here a call
is one pickled request (see ``protocol``) handed to the event loop once. Calls
that arrive while the loop is busy leave together in one ``actor_execute``
message (coalescing), at most ``depth`` messages in flight per replica, so
16 callers cost a few round trips, not 16. The worker replies once the batch is
done, or soon after its first call is, and slow calls are collected by later
messages that do not count against ``depth``: a fast call is not held behind a
slow one. This uses distributed's own rpc pool and message serialisation.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

from distributed import Client
from distributed.comm.core import CommClosedError
from distributed.protocol import to_serialize

from ...dask_internals import actor_rpc, execute_on_actor
from .protocol import COLLECT, RUN_BATCH

# Requests above this size travel as their own frame instead of inside the msgpack header.
_INLINE_LIMIT = 64 * 1024


class ActorChannel:
    """Coalesces one replica's calls into ``run_batch``/``collect`` actor messages."""

    def __init__(self, client: Client, worker: str, key: str, depth: int = 2):
        self.worker, self.key, self.depth = worker, key, depth
        self._loop = client.loop.asyncio_loop
        self._rpc = actor_rpc(client, worker)
        self._lock = threading.Lock()
        self._queued: list[tuple[bytes, PendingCall]] = []
        self._sending = 0  # run_batch messages awaiting their reply
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self.messages = 0

    def submit(self, request: bytes) -> PendingCall:
        """Queue a pickled request; the pending call's result is its pickled outcome."""
        self.refuse_on_the_loop()
        future = PendingCall()
        with self._lock:
            if self._closed:
                future.settle(error=CommClosedError(f"actor on {self.worker} was released"))
                return future
            self._queued.append((request, future))
            start = self._sending < self.depth
            if start:
                self._sending += 1
        if start:
            self._loop.call_soon_threadsafe(self._start_sender)
        return future

    def refuse_on_the_loop(self) -> None:
        """A call from the client's event loop would block it (or deadlock): refuse it."""
        if _running_loop() is self._loop:
            raise RuntimeError(
                "A DASK proxy call blocks until the model answers, so it cannot run on the Dask "
                "client's event loop; call it from another thread (e.g. loop.run_in_executor)."
            )

    def close(self) -> None:
        """Fail queued and in-flight calls at once, so their callers retry elsewhere."""
        with self._lock:
            self._closed = True
            queued, self._queued = self._queued, []
        gone = CommClosedError(f"actor on {self.worker} was released")
        try:
            self._loop.call_soon_threadsafe(self._cancel, [f for _, f in queued], gone)
        except RuntimeError:  # the loop is closed: nothing else can settle them
            self._cancel([f for _, f in queued], gone)

    def _cancel(self, queued: list[PendingCall], gone: Exception) -> None:
        """On the loop, which settles every call: fail the queued, cancel those in flight."""
        _fail(queued, gone)
        for task in list(self._tasks):
            task.cancel()

    def _start_sender(self) -> None:
        task = self._loop.create_task(self._send_batches())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_batches(self) -> None:
        """Send whatever is queued, one message at a time, until the queue is empty."""
        while True:
            with self._lock:
                batch, self._queued = self._queued, []
                if not batch:
                    self._sending -= 1
                    return
            futures = [future for _, future in batch]
            try:
                tickets, outcomes = await self._execute(
                    RUN_BATCH, [_wire(request) for request, _ in batch]
                )
                waiting = _settle_ready(futures, tickets, outcomes)
            except BaseException as err:  # every call of the batch hears it; the loop goes on
                _fail(futures, err)
                if isinstance(err, asyncio.CancelledError):
                    raise
                continue
            if waiting:
                collector = self._loop.create_task(self._collect(waiting))
                self._tasks.add(collector)
                collector.add_done_callback(self._tasks.discard)

    async def _collect(self, waiting: dict[int, PendingCall]) -> None:
        """Fetch slow calls' outcomes as they finish."""
        try:
            while waiting:
                tickets = list(waiting)
                outcomes = await self._execute(COLLECT, tickets)
                waiting = _settle_ready([waiting[t] for t in tickets], tickets, outcomes)
        except BaseException as err:
            _fail(list(waiting.values()), err)
            if isinstance(err, asyncio.CancelledError):
                raise

    async def _execute(self, function: str, argument: Any) -> Any:
        self.messages += 1
        try:
            result = await execute_on_actor(self._rpc, self.key, function, argument)
        except KeyError as err:
            if err.args == (self.key,):  # the worker no longer holds the actor
                raise CommClosedError(f"actor {self.key} is gone from {self.worker}") from None
            raise
        return pickle.loads(result)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _wire(request: bytes) -> Any:
    return request if len(request) <= _INLINE_LIMIT else to_serialize(request)


def _settle_ready(
    futures: list[PendingCall], tickets: list[int], outcomes: list
) -> dict[int, PendingCall]:
    """Resolve the futures whose outcome arrived; the rest, by ticket."""
    waiting = {}
    for future, ticket, outcome in zip(futures, tickets, outcomes, strict=True):
        if outcome is None:
            waiting[ticket] = future
        else:
            future.settle(outcome=outcome)
    return waiting


def _fail(futures: list[PendingCall], err: BaseException) -> None:
    if isinstance(err, asyncio.CancelledError):
        err = CommClosedError("call cancelled: its actor was released")
    for future in futures:
        future.settle(error=err)


class PendingCall:
    """A call's outcome to come: a bare lock is the cheapest wake-up for the waiting thread.

    Settled once, on the event loop (``concurrent.futures.Future`` costs several times
    more per call there, which is what bounds throughput).
    """

    __slots__ = ("_signal", "outcome", "error")

    def __init__(self) -> None:
        self._signal = threading.Lock()
        self._signal.acquire()
        self.outcome: bytes | None = None
        self.error: BaseException | None = None

    def settle(self, outcome: bytes | None = None, error: BaseException | None = None) -> None:
        if self.outcome is not None or self.error is not None:
            return
        self.outcome, self.error = outcome, error
        self._signal.release()

    def result(self, timeout: float) -> bytes:
        """The pickled outcome; raises TimeoutError after ``timeout`` seconds."""
        if not self._signal.acquire(timeout=timeout):
            raise TimeoutError
        self._signal.release()  # a later result() returns at once
        if self.error is not None:
            raise self.error
        return self.outcome
