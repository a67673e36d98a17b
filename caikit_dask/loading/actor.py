"""The Dask actor that holds one loaded model on a worker.

Actor methods are ``async`` so they run on the worker's event loop and hand the
model's work to a thread pool: synchronous actor methods would all share one
thread, and CPU work on the event loop would block the worker's heartbeats.
Calls arrive in batches (see ``channel``) and run concurrently; a batch replies
once its calls are done, or soon after the first is, leaving slow calls to be
collected later, so a fast call never waits behind a slow one. Output streams
stay on the worker and are pulled in chunks by the proxy.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import io
import itertools
import math
import os
import pickle
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from ..local_backend import LocalSharedBackend
from .outcomes import Outcomes
from .requests import decode_request, failed_outcome, run_request

_END = object()

# A batch replies after its first call finishes (or after REPLY_WITHIN, so slow calls do
# not hold the caller's message slots), plus up to COLLECT_LINGER for the others.
REPLY_WITHIN = 0.02
COLLECT_LINGER = 0.002
# Calls of a batch share a pool thread up to about this much work each.
SLICE = 0.002


# Loads on a worker run one at a time, so the RSS growth around a load is its own model's;
# after MEASURE_WAIT a load starts anyway (a hung load must not hold up the others), and
# goes unmeasured (0: the size on disk stays its estimate).
_measuring = threading.Lock()
MEASURE_WAIT = 5.0


def _load_model(source: str | bytes, library: str | None) -> tuple[Any, int]:
    """Load from a path the worker sees, or from a zipped model sent by the caller.

    Returns the model and the bytes its load added to the worker's memory (the
    module's library is imported first, outside the measurement; 0: not measured).
    """
    if library:
        try:
            importlib.import_module(library)
        except ImportError as err:
            raise ImportError(
                f"The module's library {library!r} is not importable on this worker ({err}). "
                "Install it in the workers' environment or ship it with "
                "client.upload_file(path, load=False)."
            ) from err
    backend = LocalSharedBackend()
    process = psutil.Process()
    alone = _measuring.acquire(timeout=MEASURE_WAIT)
    try:
        before = process.memory_info().rss
        if isinstance(source, (bytes, bytearray)):
            with tempfile.TemporaryDirectory(prefix="caikit-dask-model-") as tmp:
                zipfile.ZipFile(io.BytesIO(source)).extractall(tmp)
                model = backend.load(_model_root(tmp))
        else:
            model = backend.load(source)
        size = max(0, process.memory_info().rss - before) if alone else 0
    finally:
        if alone:
            _measuring.release()
    if model is None:
        raise ImportError(f"No caikit module registered on this worker can load {source!r}")
    return model, size


def _model_root(directory: str) -> str:
    """The directory holding config.yml inside an extracted archive."""
    for root, _, files in os.walk(directory):
        if "config.yml" in files:
            return root
    return directory


class ModelActor:
    """Owns the model; every proxy call lands in ``run_batch`` or the stream methods."""

    def __init__(self, source: str | bytes, library: str | None = None, max_concurrency: int = 4):
        # self.size: what the load took of the worker's memory, booked instead of the first
        # estimate (see loading.memory).
        self.model, self.size = _load_model(source, library)
        self.module_id = self.model.MODULE_ID
        self._max_concurrency = max_concurrency
        self._typical_call = SLICE  # seconds; a moving average of the model's calls
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="caikit-dask-model"
        )
        self._streams: dict[int, Any] = {}
        self._stream_ids = itertools.count()
        self._outcomes: Outcomes | None = None
        self._tickets = itertools.count()
        self.calls = 0

    async def run_batch(self, requests: tuple[bytes, ...]) -> bytes:
        """Start each request in the pool; reply with tickets and the outcomes ready so far.

        An outcome still running is ``None``; fetch it later with ``collect``. Replies are
        pickled here (plain ints and bytes) so the comm layer sends one frame.
        """
        if self._outcomes is None:
            self._outcomes = Outcomes(asyncio.get_running_loop())
        self.calls += len(requests)
        tickets = [next(self._tickets) for _ in requests]
        for ticket in tickets:
            self._outcomes.started(ticket)
        # Pool jobs take the batch's calls in turn, as the pool would, without a job (and a
        # thread wake-up) per call: as many jobs as give each about SLICE of work. If calls
        # are still queued after SLICE (one ran long), more jobs join, up to the pool's size.
        queue = collections.deque(zip(tickets, requests, strict=True))
        jobs = max(1, min(math.ceil(len(queue) * self._typical_call / SLICE), len(queue)))
        jobs = min(jobs, self._max_concurrency)
        self._add_jobs(queue, jobs)
        if len(queue) > jobs and jobs < self._max_concurrency:
            loop = asyncio.get_running_loop()
            loop.call_later(SLICE, self._add_jobs, queue, self._max_concurrency - jobs)
        return pickle.dumps((tickets, await self._ready(tickets, REPLY_WITHIN)), protocol=5)

    def _add_jobs(self, queue: collections.deque, count: int) -> None:
        for _ in range(min(count, len(queue))):
            self._executor.submit(self._run, queue)

    async def collect(self, tickets: list[int]) -> bytes:
        """Outcomes of earlier requests, once at least one is ready (``None``: still running)."""
        return pickle.dumps(await self._ready(tickets, None), protocol=5)

    def _run(self, queue: collections.deque) -> None:
        while True:
            try:
                ticket, request = queue.popleft()
            except IndexError:
                return
            started = time.perf_counter()
            try:
                outcome = run_request(self.model, request)
            except BaseException as err:  # noqa: BLE001 - e.g. SystemExit: the caller must hear
                outcome = failed_outcome(RuntimeError(f"The call was ended by {err!r}"))
            took = time.perf_counter() - started
            self._typical_call += (took - self._typical_call) * 0.2
            self._outcomes.finished(ticket, outcome)

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

    async def open_stream(self, request: bytes, first: int) -> tuple:
        """Start an output stream; returns its id and its first chunk."""
        self.calls += 1
        loop = asyncio.get_running_loop()

        def start() -> Any:
            method, args, kwargs = decode_request(request)
            return iter(getattr(self.model, method)(*args, **kwargs))

        stream = await loop.run_in_executor(self._executor, start)
        stream_id = next(self._stream_ids)
        self._streams[stream_id] = stream
        items, done = await self.next_chunk(stream_id, first)
        return stream_id, items, done

    async def next_chunk(self, stream_id: int, size: int) -> tuple[list, bool]:
        """Up to ``size`` more items of a stream, and whether it has ended."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return [], True
        loop = asyncio.get_running_loop()

        def pull() -> tuple[list, bool]:
            items = []
            for _ in range(size):
                item = next(stream, _END)
                if item is _END:
                    return items, True
                items.append(item)
            return items, False

        try:
            items, done = await loop.run_in_executor(self._executor, pull)
        except BaseException:
            self._streams.pop(stream_id, None)
            raise
        if done:
            self._streams.pop(stream_id, None)
        return items, done

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

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
