"""The driver of a training with ``world_size`` > 1: the task its future, events and
``retries`` belong to.

It holds no resources: it secedes from its worker's thread pool, queues its gang
in the book, submits one rank per admitted worker (pinned, with the training's
resources), reports RUNNING once every rank runs, and ends as the gang ends:
rank 0's model, or the first rank's failure (its rank, worker and exception; a
lost worker before any failure it caused), or canceled. A gang that did not start
within ``caikit_dask.gang-start-timeout`` gives its workers back and queues again.
Raising makes Dask's ``retries`` rerun the driver, hence the whole gang.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import uuid
from typing import Any

import dask.config
from dask.utils import format_time, parse_timedelta
from distributed import get_client, get_worker, secede

from ...errors import RankFailed, TrainingCanceled
from ...formatting import seconds
from .. import events
from ..on_worker import (
    begin_run,
    driving,
    forward_thread_logs,
    mark_finished,
    state_emitter,
)
from ..shipping import PickledModel
from .calls import WATCH, call_book, call_book_async, install_book
from .rank import run_rank

log = logging.getLogger("caikit_dask.training.gang")

START_TIMEOUT_KEY = "caikit_dask.gang-start-timeout"  # dask config, read on the worker
DEFAULT_START_TIMEOUT = "60s"
STOP_GRACE = 30.0  # seconds an aborted gang's ranks get to stop before the driver reports


class _Restart(Exception):
    """The gang did not start (a rank's worker was taken or left): queue it again."""


def run_gang_training(
    training_id: str,
    module_class_blob: bytes,
    pickled_args: list[bytes],
    pickled_kwargs: dict[str, bytes],
    save_path: str | None,
    log_lines: int,
    world_size: int,
    rank_options: dict[str, Any],
    retries: int = 0,
) -> PickledModel:
    """The Dask task of a gang training: rank 0's model, once every rank finished."""
    worker = get_worker()
    key = worker.get_current_task()
    begin_run(worker, training_id, key, save_path, retries)
    install_book(worker)
    secede()  # coordinating takes no thread of the worker's pool
    forwarder = forward_thread_logs(worker, training_id, key, threading.current_thread(), log_lines)
    gang = _Gang(
        training_id,
        key,
        world_size,
        rank_options,
        (module_class_blob, pickled_args, pickled_kwargs, save_path, log_lines),
    )
    try:
        with driving(training_id, gang.stop):
            while True:
                try:
                    return gang.run()
                except _Restart as why:
                    log.warning(
                        "Training %s: its ranks did not all start (%s); queueing again",
                        training_id,
                        why,
                    )
    finally:
        logging.getLogger().removeHandler(forwarder)


class _Gang:
    """One training's gang, attempt after attempt, seen from its driver."""

    def __init__(
        self,
        training_id: str,
        key: str,
        size: int,
        rank_options: dict[str, Any],
        payload: tuple,
    ):
        self.training_id, self.key, self.size = training_id, key, size
        self.rank_options, self.payload = rank_options, payload
        self.resources = dict(rank_options.get("resources") or {})
        self.worker = get_worker()
        self.emit = state_emitter(self.worker, training_id, key)
        self.stopped = threading.Event()
        self.start_timeout = parse_timedelta(
            dask.config.get(START_TIMEOUT_KEY, DEFAULT_START_TIMEOUT)
        )

    async def stop(self) -> None:
        """``cancel_on_worker``: stop the gang (and any rerun of this driver)."""
        self.stopped.set()
        await call_book_async(self.worker, "cancel", training=self.key)

    def _book(self, action: str, **kwargs: Any) -> dict[str, Any]:
        return call_book(self.worker, action, **kwargs)

    def run(self) -> PickledModel:
        tag = uuid.uuid4().hex[:8]
        gang_id = f"{self.key}/{tag}"
        rank_keys = [f"{self.key}-rank-{rank}-{tag}" for rank in range(self.size)]
        try:
            gang = self._admitted(gang_id, rank_keys)
            futures = self._submit(gang_id, gang["workers"], rank_keys)
            gang = self._until_started(gang_id, gang)
            if gang["started"]:
                workers = gang["workers"]
                log.info(
                    "Training %s runs as %d ranks on %s", self.training_id, self.size, list(workers)
                )
                self.emit(events.RUNNING, workers=workers)  # rank 0's is the training's
            gang = self._until_ended(gang_id, gang)
            return self._outcome(gang, futures)
        finally:
            self._book("release", gang_id=gang_id)

    def _admitted(self, gang_id: str, rank_keys: list[str]) -> dict[str, Any]:
        """Queue in the book until workers are admitted (or the training is canceled)."""
        waited = False
        while True:
            gang = self._book(
                "queue",
                gang_id=gang_id,
                training=self.key,
                size=self.size,
                resources=self.resources,
                rank_keys=rank_keys,
                timeout=WATCH,
            )
            if gang.get("canceled") or self.stopped.is_set():
                self._canceled()
            if gang["aborted"]:
                raise _Restart(gang["aborted"])
            if gang["workers"]:
                return gang
            if not waited:
                waited = True
                log.info(
                    "Training %s waits for %d free worker processes offering %s "
                    "(%d offer them; place %s in the queue)",
                    self.training_id,
                    self.size,
                    self.resources or "no resources",
                    gang["matching"],
                    gang["position"],
                )

    def _submit(self, gang_id: str, workers: list[str], rank_keys: list[str]) -> list:
        module_class_blob, pickled_args, pickled_kwargs, save_path, log_lines = self.payload
        client = get_client()
        return [
            client.submit(
                run_rank,
                self.training_id,
                self.key,
                gang_id,
                rank,
                module_class_blob,
                pickled_args,
                pickled_kwargs,
                save_path,
                log_lines,
                key=rank_keys[rank],
                workers=[worker],
                allow_other_workers=False,
                pure=False,
                **self.rank_options,
            )
            for rank, worker in enumerate(workers)
        ]

    def _until_started(self, gang_id: str, gang: dict[str, Any]) -> dict[str, Any]:
        """Until every rank runs, the gang is aborted, or the start timeout aborts it."""
        deadline = time.monotonic() + self.start_timeout
        while not (gang["started"] or gang["aborted"]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waiting = [rank for rank, worker in enumerate(gang["arrived"]) if worker is None]
                reason = (
                    f"rank(s) {waiting} did not start within {seconds(self.start_timeout)} "
                    f"on {[gang['workers'][rank] for rank in waiting]} (something else took "
                    f"their worker; dask config {START_TIMEOUT_KEY})"
                )
                gang = self._book("abort", gang_id=gang_id, reason=reason, unless_started=True)
                continue
            gang = self._book(
                "watch", gang_id=gang_id, version=gang["version"], timeout=min(WATCH, remaining)
            )
        return gang

    def _until_ended(self, gang_id: str, gang: dict[str, Any]) -> dict[str, Any]:
        """Until every rank ended (or, aborted, stopped: at most ``STOP_GRACE`` more)."""
        grace_until = None
        while not all(
            outcome is not None or rank not in gang["running"]
            for rank, outcome in enumerate(gang["ended"])
        ):
            if gang["aborted"]:
                grace_until = grace_until or time.monotonic() + STOP_GRACE
                if time.monotonic() > grace_until:
                    still = [r for r, outcome in enumerate(gang["ended"]) if outcome is None]
                    log.warning(
                        "Training %s: rank(s) %s still run %s after the gang was aborted",
                        self.training_id,
                        still,
                        format_time(STOP_GRACE),
                    )
                    break
            gang = self._book("watch", gang_id=gang_id, version=gang["version"], timeout=WATCH)
        return gang

    def _outcome(self, gang: dict[str, Any], futures: list) -> PickledModel:
        if gang["canceled"] or self.stopped.is_set():
            self._canceled()
        if gang["lost"] and gang["started"]:
            lost = gang["lost"][0]
            self._failed(
                RankFailed(
                    f"Training {self.training_id} failed: the worker of rank {lost['rank']} "
                    f"({lost['worker']}) died while it ran (set retries to rerun the whole "
                    f"training)",
                    lost["rank"],
                    lost["worker"],
                )
            )
        if gang["failures"]:
            failure = gang["failures"][0]
            rank = failure["rank"]
            self._failed(
                RankFailed(
                    f"Training {self.training_id} failed on rank {rank} (worker "
                    f"{failure['worker']}): {failure['error']}",
                    rank,
                    failure["worker"],
                    _picklable(_exception_of(futures[rank])),
                )
            )
        if not gang["started"]:
            raise _Restart(gang["aborted"])
        if gang["aborted"] or any(outcome != "finished" for outcome in gang["ended"]):
            self._failed(RankFailed(f"Training {self.training_id} failed: {gang['aborted']}"))
        result = futures[0].result()
        self.emit(events.FINISHED)
        mark_finished(self.worker, self.key)
        return result

    def _canceled(self) -> None:
        self.emit(events.CANCELED)
        raise TrainingCanceled(f"Training {self.training_id} was canceled")

    def _failed(self, error: RankFailed) -> None:
        self.emit(events.ERRORED, error=f"{type(error).__name__}: {error}")
        raise error


def _exception_of(future: Any) -> BaseException | None:
    try:
        return future.exception(timeout=5)
    except Exception:  # noqa: BLE001 - still running, or gone: the message says enough
        return None


def _picklable(error: BaseException | None) -> BaseException | None:
    """``error`` if it survives pickling (it travels inside RankFailed), else None."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - whatever breaks the round trip
        return None
    return error
