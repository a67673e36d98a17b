"""The Dask task of one prediction job, and stopping it.

The call runs in caikit's DestroyableThread: ``cancel_on_worker`` destroys it
(an exception raised in the thread stops Python work at once) and releases the
task at the same moment, so the worker's slot is free even when the thread is
blocked in native code (e.g. waiting on a model actor) and only ends later.
A DASK-loaded model's call carries the task's key to its actor, and
``cancel_on_worker`` stops it there too (see ``loading.actor.stoppable``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from caikit.core.toolkit.concurrency.destroyable_thread import DestroyableThread
from distributed import get_worker
from distributed.utils import sync

from ..dask_internals import worker_actors
from ..errors import PredictionCanceled
from ..loading.actor.model_actor import ModelActor
from .on_scheduler import METADATA_KEY


class _RunningJob:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: DestroyableThread | None = None
        self.canceled = False
        self.done = threading.Event()

    def cancel(self) -> None:
        with self.lock:
            self.canceled = True
            thread = self.thread
        if thread is not None and thread.is_alive():
            thread.destroy()
        self.done.set()


_running: dict[str, _RunningJob] = {}
_running_lock = threading.Lock()


def _record(worker: Any, job_id: str, field: str, value: Any = None, read: bool = False) -> Any:
    keys = [METADATA_KEY, job_id, field]
    if read:
        return sync(worker.loop, worker.scheduler.get_metadata, keys=keys, default=None)
    return sync(worker.loop, worker.scheduler.set_metadata, keys=keys, value=value)


def run_prediction(
    job_id: str, model_ref: Any, payload: Any, method: str, args: tuple, kwargs: dict
) -> Any:
    """Run ``model.<method>(*args, **kwargs)`` for the job; stoppable by ``cancel_on_worker``."""
    worker = get_worker()
    call_id = str(worker.get_current_task())  # unique to this run, even if the id is reused
    job = _RunningJob()
    with _running_lock:
        _running[job_id] = job
    try:
        # Registered first, then the flag read: a cancel either finds this job or set the flag.
        if _record(worker, job_id, "canceled", read=True):
            raise PredictionCanceled(f"Prediction {job_id} was canceled before it started")

        model_ref.prepare()

        def call() -> Any:
            try:
                model = model_ref.open(payload)
                try:
                    return model_ref.call(model, call_id, method, args, kwargs)
                finally:
                    model_ref.close(model)
            finally:
                job.done.set()

        thread = DestroyableThread(call)
        thread.name = thread_name(job_id)
        # Not under job.lock: cancel_on_worker takes it on the event loop this call needs.
        _record(worker, job_id, "start_time", time.time())
        with job.lock:
            if job.canceled:
                raise PredictionCanceled(f"Prediction {job_id} was canceled before it started")
            job.thread = thread
            thread.start()
        job.done.wait()
        if job.canceled:
            raise PredictionCanceled(f"Prediction {job_id} was canceled")
        thread.join()
        _record(worker, job_id, "completion_time", time.time())
        return thread.get_or_throw()
    finally:
        with _running_lock:
            if _running.get(job_id) is job:
                del _running[job_id]


def cancel_on_worker(job_id: str, task_key: str | None = None, dask_worker: Any = None) -> bool:
    """Stop the job's thread and its model call if here (on every worker by ``Client.run``).

    A DASK-loaded model's call carries the key of the job's task (``task_key``);
    ``Client.run`` passes ``dask_worker``.
    """
    with _running_lock:
        job = _running.get(job_id)
    if job is not None:
        job.cancel()
    stopped = task_key is not None and cancel_model_calls(task_key, dask_worker)
    return job is not None or stopped


def cancel_model_calls(call_id: str, dask_worker: Any = None) -> bool:
    """Stop the call in this worker's model actors (the job's task may run elsewhere)."""
    if dask_worker is None:
        return False
    stopped = False
    for actor in worker_actors(dask_worker):
        if isinstance(actor, ModelActor):
            stopped = actor.cancel(call_id) or stopped
    return stopped


def is_running_on_worker(job_id: str) -> bool:
    """Whether the job's thread is alive on this worker (for tests and diagnostics)."""
    name = thread_name(job_id)
    return any(thread.name == name and thread.is_alive() for thread in threading.enumerate())


def thread_name(job_id: str) -> str:
    return f"caikit-dask-prediction-{job_id}"
