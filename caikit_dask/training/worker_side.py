"""What runs on the Dask worker for one training.

The module's ``train`` runs in caikit's DestroyableThread so that a cancel can
stop it for real (Dask's own cancel leaves a running task alone, holding the
worker's slot). State changes and the training thread's log records are sent as
scheduler events, which the caller's client receives as they happen.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import cloudpickle
from caikit.core.toolkit.concurrency.destroyable_thread import DestroyableThread
from distributed import get_worker
from distributed.utils import sync

from ..errors import TrainingCanceled, TrainingResultLost
from . import events
from .by_value import resolve_module_class
from .shipping import ShippedModel

_running: dict[str, DestroyableThread] = {}
_running_lock = threading.Lock()


def _finished_marker(worker: Any, key: str, value: Any = None, read: bool = True) -> Any:
    """Read or write the scheduler-side record that this task already finished once."""
    keys = [events.FINISHED_METADATA, key]
    if read:
        return sync(worker.loop, worker.scheduler.get_metadata, keys=keys, default=None)
    return sync(worker.loop, worker.scheduler.set_metadata, keys=keys, value=value)


class _ThreadLogForwarder(logging.Handler):
    """Sends the records of one thread (the training) to the scheduler's event log."""

    def __init__(self, worker: Any, training_id: str, thread: threading.Thread):
        super().__init__(level=logging.INFO)
        self._worker, self._training_id, self._thread = worker, training_id, thread

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread.ident:
            return
        try:
            self._worker.log_event(
                events.LOG_TOPIC,
                {
                    "id": self._training_id,
                    "name": record.name,
                    "level": record.levelno,
                    "msg": _readable(record),
                    "worker": self._worker.address,
                },
            )
        except Exception:  # noqa: BLE001 - logging must never break the training
            self.handleError(record)


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
) -> ShippedModel:
    """The Dask task: train (and save), reporting state, stoppable by ``cancel_on_worker``."""
    module_class = resolve_module_class(module_class)
    worker = get_worker()
    key = worker.get_current_task()

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

    finished_at = _finished_marker(worker, key)
    if finished_at:
        raise TrainingResultLost(
            f"Training {training_id} had completed, but the worker holding its model died; "
            f"load it from its save_path ({save_path}) instead of the training's result."
        )
    args = tuple(cloudpickle.loads(blob) for blob in pickled_args)
    kwargs = {name: cloudpickle.loads(blob) for name, blob in pickled_kwargs.items()}
    thread = DestroyableThread(_train_and_save, module_class, args, kwargs, save_path)
    thread.name = f"caikit-dask-training-{training_id}"
    forwarder = _ThreadLogForwarder(worker, training_id, thread)
    root = logging.getLogger()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.addHandler(forwarder)
    with _running_lock:
        _running[training_id] = thread
    emit(events.RUNNING)
    try:
        thread.start()
        thread.join()
    finally:
        with _running_lock:
            _running.pop(training_id, None)
        root.removeHandler(forwarder)
    if thread.canceled:
        emit(events.CANCELED)
        raise TrainingCanceled(f"Training {training_id} was canceled")
    if thread.threw:
        err = thread.error
        emit(events.ERRORED, error=f"{type(err).__name__}: {err}")
        raise err
    emit(events.FINISHED)
    _finished_marker(worker, key, time.time(), read=False)
    return ShippedModel(thread.get_or_throw())


def cancel_on_worker(training_id: str) -> bool:
    """Stop the training's thread if it runs here (called on every worker by ``Client.run``)."""
    with _running_lock:
        thread = _running.get(training_id)
    if thread is None:
        return False
    thread.destroy()
    return True


def is_running_on_worker(training_id: str) -> bool:
    """Whether this worker is executing the training (used by tests and diagnostics)."""
    with _running_lock:
        thread = _running.get(training_id)
    return thread is not None and thread.is_alive()
