"""A training's state machine: what its events, scheduler facts and future say it is.

Status moves QUEUED -> RUNNING -> COMPLETED / ERRORED / CANCELED. Events from the
worker (``on_worker``), the scheduler's facts on a replay (``on_scheduler``),
the caller's own decisions (cancel, a lost worker, no resources) and the Dask
future's status all feed it; ``status`` reads them in that order of authority.
A decision is announced to other clients as an event; its echo back here is
ignored (``expect_echo``), so each decision is applied once, by ``decide``.
Nothing here talks to Dask.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from caikit.core.data_model import JobStatus

from ..errors import TrainingCanceled, TrainingResultLost
from . import events


class TrainingState:
    """Times, worker and outcome of one training's task (``key``), updated under a lock."""

    def __init__(self, key: str, retries: int = 0, world_size: int = 1):
        self.key = key
        self.retries = retries
        self.world_size = world_size  # above 1, the task is the driver of that many ranks
        self.start_time: float | None = None
        self.completion_time: float | None = None
        self.worker: str | None = None
        self.workers: list[str] = []  # one per rank (a gang's RUNNING event names them)
        self.worker_deaths = 0
        self.finished_once = False
        self.outcome: JobStatus | None = None  # decided by the caller, not the task
        self.errors: list[Exception] = []
        self.done = threading.Event()
        self._lock = threading.Lock()
        # Events this state announced itself (``decide``'s outcome, sent to other clients),
        # each dropped once when it comes back through the monitor.
        self._echoes: list[dict[str, Any]] = []

    def apply_event(self, msg: dict[str, Any]) -> None:
        """Fold one scheduler event about this training into its state.

        The echo of this state's own announcement (``expect_echo``) is not folded in
        again: the decision was taken in ``decide``, and re-applying it would turn a
        cancel that ``decide`` refused (the task ended first) into CANCELED after all.
        """
        if msg.get("key", self.key) != self.key:
            return  # an earlier training that reused this id
        state = msg.get("state")
        with self._lock:
            if msg in self._echoes:
                self._echoes.remove(msg)
                return
            if state == events.RUNNING:
                self.start_time = msg.get("time")
                # A gang's driver names its ranks' workers; "worker" is the sender's (the
                # scheduler sets it on every worker's event).
                self.workers = list(msg.get("workers") or [msg.get("worker")])
                self.worker = self.workers[0]
            if state == events.FINISHED:
                self.finished_once = True
            if state in (events.FINISHED, events.ERRORED, events.CANCELED):
                self.completion_time = self.completion_time or msg.get("time")
            if state == events.CANCELED and self.outcome is None:
                self.outcome = JobStatus.CANCELED

    def apply_scheduler_facts(self, facts: dict[str, Any]) -> None:
        """What outlives the scheduler's bounded event log: task state and finish time."""
        with self._lock:
            if facts["finished_at"]:
                self.finished_once = True
                self.completion_time = self.completion_time or facts["finished_at"]
            if facts["task_state"] == "processing" and self.start_time is None:
                # Its RUNNING event was evicted. A gang's driver processes while it queues:
                # the gang book says whether its ranks run.
                gang = facts.get("gang")
                if self.world_size == 1:
                    self.start_time = time.time()
                    self.worker = facts["processing_on"]
                elif gang and gang["started"]:
                    self.start_time = time.time()
                    self.workers = list(gang["workers"])
                    self.worker = self.workers[0]

    def worker_died(self) -> bool:
        """Count a worker lost while running this; True once that exceeds ``retries``."""
        with self._lock:
            self.worker_deaths += 1
            return self.worker_deaths > self.retries

    def decide(self, outcome: JobStatus, reason: Exception | None, task_done: bool) -> None:
        """The caller ends the training (cancel, failure it saw): unless the task ended first."""
        with self._lock:
            if self.outcome is None and not task_done:
                self.outcome = outcome
                if reason is not None:
                    self.errors = [reason]
            self.completion_time = self.completion_time or time.time()
        self.done.set()

    def expect_echo(self, msg: dict[str, Any]) -> None:
        """``msg`` announces this state's decision to other clients: its echo is ignored."""
        with self._lock:
            self._echoes.append(msg)

    def task_ended(self) -> None:
        """The task's future is done (finished, failed, cancelled or lost)."""
        with self._lock:
            self.completion_time = self.completion_time or time.time()
        self.done.set()

    def status(
        self, future_status: str, exception: Callable[[], BaseException | None]
    ) -> JobStatus:
        """The status, given the future's status and (read only if needed) its exception."""
        if self.outcome is not None:
            return self.outcome
        if future_status == "finished" or self.finished_once:
            # Once finished, a lost result (being recomputed, or TrainingResultLost) is
            # still a completed training.
            return JobStatus.COMPLETED
        if future_status == "error":
            raised = exception()
            if isinstance(raised, TrainingCanceled):
                return JobStatus.CANCELED
            if isinstance(raised, TrainingResultLost):
                return JobStatus.COMPLETED
            return JobStatus.ERRORED
        if future_status in ("cancelled", "lost"):
            return JobStatus.ERRORED  # a user's cancel is recorded in ``outcome`` above
        return JobStatus.RUNNING if self.start_time is not None else JobStatus.QUEUED
