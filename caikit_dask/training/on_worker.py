"""What runs on the Dask worker for one training.

The module's ``train`` runs in caikit's DestroyableThread so that a cancel can
stop it for real (Dask's own cancel leaves a running task alone, holding the
worker's slot). State changes and the training thread's log records are sent as
scheduler events, which the caller's client receives as they happen; the
scheduler keeps the last ``log_lines`` of each training's log (``log_store``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import cloudpickle
from caikit.core.toolkit.concurrency.destroyable_thread import DestroyableThread
from distributed import get_worker
from distributed.protocol.pickle import dumps
from distributed.utils import sync

from ..dask_internals import register_scheduler_plugin_from_worker
from ..errors import TrainingCanceled, TrainingResultLost
from . import events, worker_death
from .by_value import resolve_module_class
from .log_store import log_store_plugin
from .shipping import ShippedModel

_running: dict[str, DestroyableThread] = {}
_ended: dict[str, threading.Event] = {}
# Drivers of trainings with world_size > 1 (``gang.driver``) running here: their stop.
_drivers: dict[str, Any] = {}
_log_store_pickle: bytes | None = None  # the plugin, pickled once per worker process
_running_lock = threading.Lock()


def mark_finished(worker: Any, key: str) -> None:
    """Record on the scheduler that this task finished once (read by ``begin_run``)."""
    keys = [events.FINISHED_METADATA, key]
    sync(worker.loop, worker.scheduler.set_metadata, keys=keys, value=time.time())


def _prepare_scheduler(worker: Any, key: str) -> Any:
    """Make sure the scheduler keeps training logs, and read the finished marker, at once."""
    global _log_store_pickle
    if _log_store_pickle is None:
        _log_store_pickle = dumps(log_store_plugin())

    async def both() -> Any:
        finished_at, _ = await asyncio.gather(
            worker.scheduler.get_metadata(keys=[events.FINISHED_METADATA, key], default=None),
            register_scheduler_plugin_from_worker(worker, _log_store_pickle, events.LOG_STORE),
        )
        return finished_at

    return sync(worker.loop, both)


def _refuse_a_run_beyond_retries(worker: Any, training_id: str, key: str, retries: int) -> None:
    """Record this run on the scheduler; if the runs before it used up ``retries`` (their
    workers died: Dask runs the task again), raise how the last one died instead of
    training, so a training that kills its worker kills one (see ``worker_death``)."""

    async def claim() -> Exception | None:
        run = worker_death.this_run(worker)
        died = await worker_death.claim_run(worker.scheduler, key, run, retries)
        if died is None:
            return None
        return await worker_death.death_error(worker.rpc, training_id, died)

    refusal = sync(worker.loop, claim)
    if refusal is not None:
        raise refusal


def begin_run(worker: Any, training_id: str, key: str, save_path: str | None, retries: int) -> None:
    """What every run of a training task does first (one rank or a gang's driver): make
    sure the scheduler keeps its logs, refuse to train again a training that completed
    (its worker died holding the model) or whose earlier runs used up ``retries``."""
    if _prepare_scheduler(worker, key):
        raise TrainingResultLost(
            f"Training {training_id} had completed, but the worker holding its model died; "
            f"load it from its save_path ({save_path}) instead of the training's result."
        )
    _refuse_a_run_beyond_retries(worker, training_id, key, retries)


class _ThreadLogForwarder(logging.Handler):
    """Sends the records of one thread (the training) to the scheduler's event log.

    Each line carries its run (one per attempt: a retry reruns the task) and its
    number in that run, so a reader merging the kept log with new events sees each
    line once; ``keep`` bounds the log the scheduler keeps (``log_store``).
    """

    def __init__(
        self,
        worker: Any,
        training_id: str,
        key: str,
        thread: threading.Thread,
        keep: int,
        rank: int | None = None,
    ):
        super().__init__(level=logging.INFO)
        self._worker, self._training_id, self._key = worker, training_id, key
        self._thread, self._keep, self._rank = thread, keep, rank
        self._run = uuid.uuid4().hex[:12]
        self._seq = itertools.count()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread.ident:
            return
        try:
            text = _readable(record)
            tag = {} if self._rank is None else {"rank": self._rank}
            self._worker.log_event(
                events.LOG_TOPIC,
                tag
                | {
                    "id": self._training_id,
                    "key": self._key,
                    "name": record.name,
                    "level": record.levelno,
                    "msg": text,
                    "worker": self._worker.address,
                    "line": _line(record, text, self._rank),
                    "run": self._run,
                    "seq": next(self._seq),
                    "keep": self._keep,
                },
            )
        except Exception:  # noqa: BLE001 - logging must never break the training
            self.handleError(record)


def _line(record: logging.LogRecord, text: str, rank: int | None = None) -> str:
    """One log line as ``future.logs()`` returns it: time, level, (rank,) logger, message."""
    moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
    where = "" if rank is None else f"[rank {rank}] "
    return f"{moment},{int(record.msecs):03d} {record.levelname} {where}{record.name}: {text}"


def _readable(record: logging.LogRecord) -> str:
    """caikit's alog passes a dict {log_code, message, args}; format it as a plain line."""
    message = record.msg
    if isinstance(message, dict) and "message" in message:
        args = message.get("args")
        try:
            text = message["message"] % args if args else str(message["message"])
        except (TypeError, ValueError):
            text = str(message["message"])
        code = message.get("log_code")
        return f"{code} {text}" if code and code != "<UNK>" else text
    return record.getMessage()


def state_emitter(worker: Any, training_id: str, key: str) -> Any:
    """``emit(state, **extra)``: one state event of the training (key ``key``) from here."""

    def emit(state: str, **extra: Any) -> None:
        worker.log_event(
            events.STATE_TOPIC,
            {
                "id": training_id,
                "key": key,
                "state": state,
                "time": time.time(),
                "worker": worker.address,
            }
            | extra,
        )

    return emit


def forward_thread_logs(
    worker: Any,
    training_id: str,
    key: str,
    thread: threading.Thread,
    keep: int,
    rank: int | None = None,
) -> logging.Handler:
    """Start forwarding ``thread``'s log records (INFO and up) as the training's log lines;
    remove the returned handler from the root logger to stop."""
    forwarder = _ThreadLogForwarder(worker, training_id, key, thread, keep, rank)
    root = logging.getLogger()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.addHandler(forwarder)
    return forwarder


def _train_and_save(module_class: Any, args: tuple, kwargs: dict, save_path: str | None) -> Any:
    model = module_class.train(*args, **kwargs)
    if save_path is not None:
        model.save(save_path)
    return model


def run_training(
    training_id: str,
    module_class: Any,
    pickled_args: list[bytes],
    pickled_kwargs: dict[str, bytes],
    save_path: str | None,
    log_lines: int = 1000,
    retries: int = 0,
) -> ShippedModel:
    """The Dask task: train (and save), reporting state, stoppable by ``cancel_on_worker``."""
    module_class = resolve_module_class(module_class)
    worker = get_worker()
    key = worker.get_current_task()
    emit = state_emitter(worker, training_id, key)
    begin_run(worker, training_id, key, save_path, retries)
    args = tuple(cloudpickle.loads(blob) for blob in pickled_args)
    kwargs = {name: cloudpickle.loads(blob) for name, blob in pickled_kwargs.items()}
    thread = DestroyableThread(_train_and_save, module_class, args, kwargs, save_path)
    thread.name = f"caikit-dask-training-{training_id}"
    forwarder = forward_thread_logs(worker, training_id, key, thread, log_lines)
    with stoppable(training_id, thread):
        return _run(thread, training_id, emit, worker, key, forwarder)


@contextlib.contextmanager
def stoppable(training_id: str, thread: DestroyableThread) -> Iterator[None]:
    """While inside, ``cancel_on_worker(training_id)`` destroys ``thread`` (and, with its
    ``wait``, returns once this has been left)."""
    ended = threading.Event()  # set once the run reported its end (``cancel_on_worker``)
    with _running_lock:
        _running[training_id] = thread
        _ended[training_id] = ended
    try:
        yield
    finally:
        with _running_lock:
            if _running.get(training_id) is thread:
                del _running[training_id]
            if _ended.get(training_id) is ended:
                del _ended[training_id]
        ended.set()


@contextlib.contextmanager
def driving(training_id: str, stop: Any) -> Iterator[None]:
    """While inside, ``cancel_on_worker(training_id)`` calls ``stop()`` (awaiting it) and
    (with its ``wait``) returns once this has been left: a gang training's driver."""
    ended = threading.Event()
    with _running_lock:
        _drivers[training_id] = (stop, ended)
    try:
        yield
    finally:
        with _running_lock:
            if _drivers.get(training_id, (None,))[0] is stop:
                del _drivers[training_id]
        ended.set()


def _run(thread: Any, training_id: str, emit: Any, worker: Any, key: str, forwarder: Any) -> Any:
    emit(events.RUNNING)
    try:
        thread.start()
        thread.join()
    finally:
        with _running_lock:
            _running.pop(training_id, None)
        logging.getLogger().removeHandler(forwarder)
    if thread.canceled:
        emit(events.CANCELED)
        raise TrainingCanceled(f"Training {training_id} was canceled")
    if thread.threw:
        err = thread.error
        emit(events.ERRORED, error=f"{type(err).__name__}: {err}")
        raise err
    emit(events.FINISHED)
    mark_finished(worker, key)
    return ShippedModel(thread.get_or_throw())


async def cancel_on_worker(training_id: str, wait: float = 0) -> bool:
    """Stop the training's thread if it runs here (called on every worker by ``Client.run``).

    With ``wait``, return once the run has reported its end (at most ``wait`` seconds),
    so that a delete forgets the training after its last event, not before.
    """
    with _running_lock:
        thread = _running.get(training_id)
        ended = _ended.get(training_id)
        stop, driver_ended = _drivers.get(training_id, (None, None))
    if thread is None and stop is None:
        return False
    if thread is not None:
        thread.destroy()
    if stop is not None:
        await stop()
    for done in (ended, driver_ended):
        if wait and done is not None:
            await asyncio.to_thread(done.wait, wait)
    return True


def is_running_on_worker(training_id: str) -> bool:
    """Whether this worker is executing the training (used by tests and diagnostics)."""
    with _running_lock:
        thread = _running.get(training_id)
    return thread is not None and thread.is_alive()
