"""A worker's calls to the gang book on the scheduler (from a driver or a rank)."""

from __future__ import annotations

from typing import Any

from distributed.protocol.pickle import dumps
from distributed.utils import sync

from ...dask_internals import register_scheduler_plugin_from_worker
from .book import GANG_BOOK, GANG_HANDLER, GangBook

WATCH = 10.0  # seconds one long poll waits at most (it returns as soon as the gang changes)

_book_pickle: bytes | None = None  # the plugin, pickled once per worker process


def call_book(on: Any, action: str, /, **kwargs: Any) -> dict[str, Any]:
    """One book step (``GangBook.handle``) from a task's thread on the worker ``on``."""
    return sync(on.loop, call_book_async, on, action, **kwargs)


async def call_book_async(on: Any, action: str, /, **kwargs: Any) -> dict[str, Any]:
    """One book step, on the event loop of the worker ``on``."""
    return await getattr(on.scheduler, GANG_HANDLER)(action=action, **kwargs)


def install_book(worker: Any) -> None:
    """Make sure the scheduler has the book (idempotent: once per scheduler)."""
    global _book_pickle
    if _book_pickle is None:
        _book_pickle = dumps(GangBook())
    sync(worker.loop, register_scheduler_plugin_from_worker, worker, _book_pickle, GANG_BOOK)
