"""The one thread pool a worker process runs its models' calls on.

A pool per model would give a worker with a thousand models thousands of
threads; one pool per worker process keeps the count bounded however many
models it holds. Its size is the dask config key ``caikit_dask.actor-threads``
as the worker sees it (e.g. ``DASK_CAIKIT_DASK__ACTOR_THREADS=16``), by default
twice the worker's ``nthreads`` and at least 8. Each model takes at most half
of it (see ``ModelActor``), so one slow model never holds every thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import dask.config

CONFIG_KEY = "caikit_dask.actor-threads"
MIN_THREADS = 8

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_size = 0


def shared_pool() -> ThreadPoolExecutor:
    """This process's pool for model calls, created on first use."""
    global _pool, _size
    if _pool is None:
        with _lock:
            if _pool is None:
                _size = pool_size()
                _pool = ThreadPoolExecutor(
                    max_workers=_size, thread_name_prefix="caikit-dask-model"
                )
    return _pool


def pool_size() -> int:
    """Threads for the pool: the config's, or twice the worker's nthreads (at least 8)."""
    configured = dask.config.get(CONFIG_KEY, None)
    if configured is None:
        return max(MIN_THREADS, 2 * _worker_nthreads())
    if isinstance(configured, bool) or not isinstance(configured, int) or configured < 1:
        raise ValueError(
            f"Dask config {CONFIG_KEY}={configured!r} is not a positive whole number of "
            "threads: set it to e.g. 16 in the workers' dask config "
            "(DASK_CAIKIT_DASK__ACTOR_THREADS=16), or unset it for the default."
        )
    return configured


def per_model_limit(wanted: int) -> int:
    """Pool threads one model may hold at once: ``wanted``, but at most half the pool."""
    shared_pool()
    return max(1, min(wanted, _size // 2))


def _worker_nthreads() -> int:
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except ValueError:  # not on a worker (e.g. an actor built in-process)
        return 1
