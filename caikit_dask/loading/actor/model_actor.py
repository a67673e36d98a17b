"""The Dask actor that holds one loaded model on a worker.

Actor methods are ``async`` so they run on the worker's event loop and hand the
model's work to the worker's shared thread pool (see ``worker_pool``):
synchronous actor methods would all share one thread, and CPU work on the event
loop would block the worker's heartbeats. A model holds at most a few of the
pool's threads at once, so one slow model never holds up the others.
Calls arrive in batches (see ``wire.channel``) and run concurrently; a batch replies
once its calls are done, or soon after the first is, leaving slow calls to be
collected later, so a fast call never waits behind a slow one. Output streams
stay on the worker and are pulled in chunks by the proxy.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import math
import os
import pickle
import threading
import time
from typing import Any

from ..wire.protocol import (
    MAX_CONCURRENCY,
    decode_request,
    failed_outcome,
    run_as_outcome,
    run_request,
)
from . import call_listener
from .model_load import load_model
from .outcomes import Outcomes
from .stoppable import StoppableCall
from .worker_pool import per_model_limit, shared_pool

_END = object()
_WORK = object()  # the ticket of a queued piece of stream work (a callable)
_STOPPED_EARLY_KEPT = 256  # ids of cancels that arrived before their call

# A batch replies after its first call finishes (or after REPLY_WITHIN, so slow calls do
# not hold the caller's message slots), plus up to COLLECT_LINGER for the others.
REPLY_WITHIN = 0.02
COLLECT_LINGER = 0.002
# Calls of a batch share a pool thread up to about this much work each.
SLICE = 0.002
# A direct call of a model whose calls average less than this runs in the reader thread.
INLINE_BELOW = 0.0005


class ModelActor:
    """Owns the model; every proxy call lands in ``run_batch`` or the stream methods.

    Calls wait in one queue per model; the model's jobs in the shared pool take them
    in turn. At most ``max_concurrency`` jobs (and at most half the pool) per model.
    """

    def __init__(
        self,
        source: str | bytes,
        library: str | None = None,
        max_concurrency: int = MAX_CONCURRENCY,
    ):
        # self.size: what the load took of the worker's memory, booked instead of the first
        # estimate (see placement.memory).
        self.model, self.size = load_model(source, library)
        self.module_id = self.model.MODULE_ID
        self._executor = shared_pool()
        self._max_concurrency = per_model_limit(max_concurrency)
        self._typical_call = SLICE  # seconds; a moving average of the model's calls
        self._queue: collections.deque = collections.deque()
        self._jobs = 0  # this model's jobs in the pool, each taking from the queue
        self._jobs_lock = threading.Lock()
        self._streams: dict[int, Any] = {}
        self._stream_ids = itertools.count()
        self._outcomes: Outcomes | None = None
        self._tickets = itertools.count()
        self._stoppable: dict[str, tuple[StoppableCall, tuple]] = {}
        self._stopped_early: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.calls = 0
        self._direct = call_listener.register(self)

    async def call_address(self) -> dict:
        """Where the proxy can send this model's calls directly (see ``call_listener``):
        ``{"address", "token"}``, or ``{"address": None, "why"}``."""
        return self._direct

    def run_direct(self, request: bytes, reply: Any, reader: Any) -> bool:
        """From a call listener's reader thread: one call, queued as ``run_batch`` queues
        each of its calls, ``reply(outcome)`` called from the pool thread that ran it.

        A model whose calls are quick (under ``INLINE_BELOW`` on average) has it run
        right here when it has a free slot and nothing queued: no thread switch. Returns
        whether it ran here (``reader.run_here()`` was called first; see
        ``call_listener``, which moves the reading elsewhere if it runs long).
        """
        self.calls += 1
        with self._jobs_lock:
            here = (
                self._typical_call < INLINE_BELOW
                and not self._queue
                and self._jobs < self._max_concurrency
            )
            if here:
                self._jobs += 1
            else:
                self._queue.append((reply, request))
        if not here:
            self._add_jobs(1)
            return False
        reader.run_here()
        try:
            reply(self._timed(request))
        finally:
            with self._jobs_lock:
                self._jobs -= 1
                waiting = bool(self._queue)
            if waiting:
                self._add_jobs(1)
        return True

    def drop_direct(self, connection: Any) -> int:
        """Drop the queued direct calls that came over ``connection`` (its caller is gone:
        nobody would read their answers); returns how many."""
        with self._jobs_lock:
            kept = [i for i in self._queue if getattr(i[0], "connection", None) is not connection]
            dropped = len(self._queue) - len(kept)
            if dropped:
                self._queue.clear()
                self._queue.extend(kept)
        return dropped

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams

    async def run_batch(self, requests: tuple[bytes, ...]) -> bytes:
        """Queue each request for the pool; reply with tickets and the outcomes ready so far.

        An outcome still running is ``None``; fetch it later with ``collect``. Replies are
        pickled here (plain ints and bytes) so the comm layer sends one frame.
        """
        if self._outcomes is None:
            self._outcomes = Outcomes(asyncio.get_running_loop())
        self.calls += len(requests)
        tickets = [next(self._tickets) for _ in requests]
        for ticket in tickets:
            self._outcomes.started(ticket)
        # Jobs take the queued calls in turn, as the pool would, without a job (and a thread
        # wake-up) per call: as many jobs as give each about SLICE of work. If calls are
        # still queued after SLICE (one ran long), more jobs join, up to the model's limit.
        jobs = max(1, min(math.ceil(len(requests) * self._typical_call / SLICE), len(requests)))
        with self._jobs_lock:
            self._queue.extend(zip(tickets, requests, strict=True))
        running = self._add_jobs(jobs)
        if running < self._max_concurrency and len(self._queue) > running:
            asyncio.get_running_loop().call_later(SLICE, self._add_jobs, self._max_concurrency)
        return pickle.dumps((tickets, await self._ready(tickets, REPLY_WITHIN)), protocol=5)

    async def run_stoppable(self, call_id: str, request: bytes) -> bytes:
        """One call that ``cancel(call_id)`` can stop (see ``stoppable``): its pickled outcome.

        Queued with the model's other calls; ``run_batch`` stays free of the bookkeeping.
        """
        self.calls += 1
        call = StoppableCall(call_id, request, asyncio.get_running_loop())
        item = (_WORK, functools.partial(call.run, self.model))
        with self._jobs_lock:  # as ``cancel``: it finds the call, or the call finds its id
            self._stoppable[call_id] = (call, item)
            overtaken = call_id in self._stopped_early
            if overtaken:
                del self._stopped_early[call_id]
            else:
                self._queue.append(item)
        if overtaken:  # the cancel arrived before the call
            call.stop(dequeued=True)
        else:
            self._add_jobs(1)
        try:
            return await call.outcome
        finally:
            if self._stoppable.get(call_id, (None,))[0] is call:
                del self._stoppable[call_id]

    def cancel(self, call_id: str) -> bool:
        """Stop the call ``call_id``: a queued one is dropped, a running one interrupted.

        A plain method, so callable from any thread (Dask runs it in the actor's thread;
        ``cancel_on_worker`` on the event loop). An id not seen yet is remembered for a
        while, in case its call is still on the way here.
        """
        with self._jobs_lock:
            call, item = self._stoppable.get(call_id, (None, None))
            if call is None:
                self._stopped_early[call_id] = None
                while len(self._stopped_early) > _STOPPED_EARLY_KEPT:
                    self._stopped_early.popitem(last=False)
                return False
            try:
                self._queue.remove(item)
                dequeued = True
            except ValueError:  # taken by a pool job already
                dequeued = False
        call.stop(dequeued)
        return True

    def _add_jobs(self, wanted: int) -> int:
        """Up to ``wanted`` more jobs while calls wait, within the limit; the jobs now running."""
        with self._jobs_lock:
            count = min(wanted, self._max_concurrency - self._jobs, len(self._queue))
            if count <= 0:
                return self._jobs
            self._jobs += count
            running = self._jobs
        for _ in range(count):
            self._executor.submit(self._run)
        return running

    async def collect(self, tickets: list[int]) -> bytes:
        """Outcomes of earlier requests, once at least one is ready (``None``: still running)."""
        return pickle.dumps(await self._ready(tickets, None), protocol=5)

    def _run(self) -> None:
        queue, lock = self._queue, self._jobs_lock
        while True:
            with lock:
                if not queue:
                    self._jobs -= 1
                    return
                ticket, request = queue.popleft()
            if ticket is _WORK:
                request()
                continue
            outcome = self._timed(request)
            if type(ticket) is int:
                self._outcomes.finished(ticket, outcome)
            else:  # a direct call's reply
                ticket(outcome)

    def _timed(self, request: bytes) -> bytes:
        """Run one request: its outcome bytes; the model's typical call time follows."""
        started = time.perf_counter()
        try:
            outcome = run_request(self.model, request)
        except BaseException as err:  # noqa: BLE001 - e.g. SystemExit: the caller must hear
            outcome = failed_outcome(RuntimeError(f"The call was ended by {err!r}"))
        took = time.perf_counter() - started
        self._typical_call += (took - self._typical_call) * 0.2
        return outcome

    async def _in_turn(self, work: Any) -> Any:
        """Run ``work()`` in the pool as one of this model's queued calls (streams use it)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def run() -> None:
            try:
                result = work()
            except BaseException as err:  # noqa: BLE001 - handed to the awaiting caller
                loop.call_soon_threadsafe(_settle, done, None, err)
            else:
                loop.call_soon_threadsafe(_settle, done, result, None)

        with self._jobs_lock:
            self._queue.append((_WORK, run))
        self._add_jobs(1)
        return await done

    async def _ready(self, tickets: list[int], first_within: float | None) -> list:
        outcomes = self._outcomes
        await outcomes.wait(tickets, 1, first_within)
        await outcomes.wait(tickets, len(tickets), COLLECT_LINGER)
        return [self._take(ticket) for ticket in tickets]

    def _take(self, ticket: int) -> bytes | None:
        try:
            return self._outcomes.take(ticket)
        except KeyError:
            return failed_outcome(LookupError(f"No call with ticket {ticket} on this actor"))

    async def open_stream(self, request: bytes, first: int) -> bytes:
        """Start an output stream: the outcome bytes of (its id, its first chunk, ended).

        The module's exception, raised when the stream starts or in any chunk, crosses as
        a call's does (see ``wire.exceptions``), so the caller raises it at once.
        """
        self.calls += 1
        stream_id = next(self._stream_ids)

        def start() -> tuple[int, list, bool]:
            method, args, kwargs = decode_request(request)
            stream = iter(getattr(self.model, method)(*args, **kwargs))
            self._streams[stream_id] = stream
            return (stream_id, *self._pull(stream_id, stream, first))

        return await self._in_turn(_as_outcome(start))

    async def next_chunk(self, stream_id: int, size: int) -> bytes:
        """The outcome bytes of up to ``size`` more items of a stream and whether it ended."""
        stream = self._streams.get(stream_id)
        if stream is None:  # ended (or closed) already
            return run_as_outcome(lambda: ([], True))
        return await self._in_turn(_as_outcome(lambda: self._pull(stream_id, stream, size)))

    def _pull(self, stream_id: int, stream: Any, size: int) -> tuple[list, bool]:
        """In a pool thread: the next items. An exception after some items is kept for
        the next pull, so the caller gets those items first, as it would locally."""
        items: list = []
        try:
            for _ in range(size):
                item = next(stream, _END)
                if item is _END:
                    self._streams.pop(stream_id, None)
                    return items, True
                items.append(item)
        except BaseException as err:
            if not items or isinstance(err, (SystemExit, KeyboardInterrupt)):
                self._streams.pop(stream_id, None)
                raise
            self._streams[stream_id] = _raises(err)
        return items, False

    async def close_stream(self, stream_id: int) -> None:
        """Drop a stream the caller stopped reading."""
        stream = self._streams.pop(stream_id, None)
        close = getattr(stream, "close", None)
        if close is not None:
            close()

    async def ping(self) -> dict:
        """Health check: cheap, answered on the event loop."""
        return {
            "module_id": self.module_id,
            "calls": self.calls,
            "pid": os.getpid(),
            "bytes": self.size,
        }


def _as_outcome(work: Any) -> Any:
    """``work`` made to return outcome bytes whatever it raises (streams' pool work)."""

    def run() -> bytes:
        try:
            return run_as_outcome(work)
        except BaseException as err:  # noqa: BLE001 - e.g. SystemExit: the caller must hear
            return failed_outcome(RuntimeError(f"The call was ended by {err!r}"))

    return run


def _raises(err: BaseException) -> Any:
    """An iterator that raises ``err``: a stream's failure after the items already sent."""
    raise err
    yield  # pragma: no cover - makes this a generator


def _settle(future: asyncio.Future, result: Any, err: BaseException | None) -> None:
    if future.cancelled():
        return
    if err is not None:
        future.set_exception(err)
    else:
        future.set_result(result)
