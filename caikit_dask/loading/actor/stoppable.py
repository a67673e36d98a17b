"""One call on a model's actor that its caller can stop (a prediction job's call).

Queued, it is dropped; running, an exception is raised in the pool thread that
runs it (``PyThreadState_SetAsyncExc``, as caikit's DestroyableThread does), which
stops Python work at its next bytecode. The call's own wrapper catches it, so the
shared pool thread lives on and takes the next call of any model. The exception
is only ever pending while the call runs: once the call leaves the model, a
pending one is cleared under the same lock, so it never lands in other work.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from typing import Any

from ...errors import PredictionCanceled
from ..wire.protocol import failed_outcome, run_request


class CallInterrupted(BaseException):
    """Raised in the pool thread of a stopped call; a BaseException so models pass it on."""


def _raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    """Make ``thread_id`` raise ``exception`` at its next bytecode (``None``: clear it)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), None if exception is None else ctypes.py_object(exception)
    )


class StoppableCall:
    """A pickled request, its outcome to come, and the pool thread running it (if any)."""

    def __init__(self, call_id: str, request: bytes, loop: asyncio.AbstractEventLoop):
        self.call_id, self._request, self._loop = call_id, request, loop
        self.outcome: asyncio.Future = loop.create_future()
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self._stopped = False
        self._interrupted = False

    def run(self, model: Any) -> None:
        """In a pool thread: run the call unless it was stopped; settle its outcome."""
        self._settle(self._outcome(model))

    def _outcome(self, model: Any) -> bytes:
        try:
            with self._lock:
                if self._stopped:
                    return self._canceled()
                self._thread_id = threading.get_ident()
            try:
                return run_request(model, self._request)
            finally:
                with self._lock:
                    self._thread_id = None
                    if self._interrupted:  # raised already, or cleared here: never later
                        _raise_in_thread(threading.get_ident(), None)
        except CallInterrupted:
            return self._canceled()

    def stop(self, dequeued: bool) -> None:
        """Stop the call: settle it now if it was taken off the queue, else interrupt it."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._thread_id is not None:
                self._interrupted = True
                _raise_in_thread(self._thread_id, CallInterrupted)
        if dequeued:
            self._settle(self._canceled())

    def _canceled(self) -> bytes:
        return failed_outcome(PredictionCanceled(f"Call {self.call_id} was canceled"))

    def _settle(self, outcome: bytes) -> None:
        self._loop.call_soon_threadsafe(_set_once, self.outcome, outcome)


def _set_once(future: asyncio.Future, outcome: bytes) -> None:
    if not future.done():
        future.set_result(outcome)
