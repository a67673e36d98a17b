"""A training submitted to Dask: status, wait, cancel and result for one task.

The task's Dask future is published as a dataset so the training outlives the
submitting client and another process can look it up by id; its state comes
from scheduler events (see ``monitor``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.model_management.model_trainer_base import TrainingInfo
from caikit.core.modules import ModuleBase
from distributed import Client, Future
from distributed import wait as distributed_wait

from ..errors import DaskBackendError, error, log
from ..resources import describe_missing, workers_offering
from . import events
from .by_value import prepare_module_class
from .monitor import TrainingMonitor
from .publisher import DatasetPublisher
from .submission import check_importable_on_workers, pickle_arguments
from .worker_side import TrainingCanceled, TrainingResultLost, cancel_on_worker, run_training


def _to_datetime(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp) if timestamp is not None else None


class DaskTraining:
    """One training's Dask task, followed through scheduler events."""

    def __init__(
        self,
        client: Client,
        training_id: str,
        future: Future,
        submission_time: float,
        retries: int = 0,
        resources: dict | None = None,
        module_class: type | None = None,
    ):
        self.id = training_id
        self.client = client
        self.future = future
        self.key = future.key
        self.retries = retries
        self.resources = dict(resources or {})
        self.module_class = module_class
        self.submission_time = submission_time
        self.start_time: float | None = None
        self.completion_time: float | None = None
        self.worker: str | None = None
        self.worker_deaths = 0
        self.finished_once = False
        self._outcome: JobStatus | None = None
        self._errors: list[Exception] = []
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._published: concurrent.futures.Future | None = None  # None: published elsewhere
        future.add_done_callback(self._on_future_done)

    # -- submission and lookup -------------------------------------------------------------

    @classmethod
    def submit(
        cls,
        client: Client,
        module_class: type[ModuleBase],
        args: tuple,
        kwargs: dict,
        save_path: str | None,
        training_id: str,
        options: dict[str, Any],
        resource_timeout: float,
        max_payload_size: int | None = None,
    ) -> DaskTraining:
        """Check the call, submit the task, publish it; returns without waiting for it."""
        pickled_args, pickled_kwargs = pickle_arguments(args, kwargs, max_payload_size)
        check_importable_on_workers(client, module_class)
        resources = options.get("resources") or {}
        worker_resources = cls._worker_resources(client) if resources else {}
        can_run_now = not resources or workers_offering(worker_resources, resources)
        if not can_run_now and resource_timeout == 0:
            error("<DSK30000010E>", DaskBackendError(describe_missing(worker_resources, resources)))
        shipped_class = prepare_module_class(module_class)
        monitor = TrainingMonitor.for_client(client)  # subscribed before the task can start
        monitor.expect(training_id)
        submission_time = time.time()
        future = client.submit(
            run_training,
            training_id,
            shipped_class,
            pickled_args,
            pickled_kwargs,
            save_path,
            key=f"caikit-training-{training_id}-{uuid.uuid4().hex[:8]}",
            pure=False,
            **options,
        )
        training = cls(
            client,
            training_id,
            future,
            submission_time,
            retries=options.get("retries", 0),
            resources=resources,
            module_class=module_class,
        )
        monitor.follow(training)
        training._published = DatasetPublisher.for_client(client).publish(
            events.dataset_name(training_id),
            {
                "future": future,
                "submission_time": submission_time,
                "retries": training.retries,
                "resources": resources,
                "module": f"{module_class.__module__}.{module_class.__qualname__}",
            },
        )
        if not can_run_now:
            training._watch_resources(resource_timeout)
        return training

    @classmethod
    def reattach(cls, client: Client, training_id: str) -> DaskTraining:
        """The training with this id, submitted by any client of the same scheduler."""
        try:
            record = client.get_dataset(events.dataset_name(training_id))
        except KeyError:
            raise CaikitCoreException(
                status_code=CaikitCoreStatusCode.NOT_FOUND,
                message=f"Unknown training_id: {training_id}",
            ) from None
        training = cls(
            client,
            training_id,
            record["future"],
            record["submission_time"],
            retries=record.get("retries", 0),
            resources=record.get("resources"),
        )
        TrainingMonitor.for_client(client).follow(training)
        facts = events.read_scheduler_facts(client, training_id, training.key)
        for msg in facts["events"]:
            training.apply_event(msg)
        training.apply_scheduler_facts(facts)
        return training

    @staticmethod
    def _worker_resources(client: Client) -> dict[str, dict[str, float]]:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        return {address: info.get("resources") or {} for address, info in workers.items()}

    def _watch_resources(self, resource_timeout: float) -> None:
        """Fail the training if no worker able to run it shows up in time."""

        def check() -> None:
            if self._done.is_set() or self.start_time is not None:
                return
            worker_resources = self._worker_resources(self.client)
            if workers_offering(worker_resources, self.resources):
                return
            reason = (
                f"Training {self.id} could not start within resource_timeout="
                f"{resource_timeout:g}s: {describe_missing(worker_resources, self.resources)}."
            )
            log.warning("<DSK30000011W>", reason)
            self._finish(JobStatus.ERRORED, DaskBackendError(reason))
            self.future.cancel()

        timer = threading.Timer(resource_timeout, check)
        timer.daemon = True
        timer.start()

    # -- state -----------------------------------------------------------------------------

    def apply_event(self, msg: dict[str, Any]) -> None:
        """Fold one scheduler event about this training into its state."""
        if msg.get("key", self.key) != self.key:
            return  # an earlier training that reused this id
        state = msg.get("state")
        with self._lock:
            if state == events.RUNNING:
                self.start_time = msg.get("time")
                self.worker = msg.get("worker")
            if state == events.FINISHED:
                self.finished_once = True
            if state in (events.FINISHED, events.ERRORED, events.CANCELED):
                self.completion_time = self.completion_time or msg.get("time")
            if state == events.CANCELED and self._outcome is None:
                self._outcome = JobStatus.CANCELED

    def apply_scheduler_facts(self, facts: dict[str, Any]) -> None:
        """What outlives the scheduler's bounded event log: task state and finish time.

        A failed task is waited for briefly, so that this client's future carries its
        exception before anyone reads the status (a finished one has its marker).
        """
        with self._lock:
            if facts["finished_at"]:
                self.finished_once = True
                self.completion_time = self.completion_time or facts["finished_at"]
            if facts["task_state"] == "processing" and self.start_time is None:
                self.start_time = time.time()  # its RUNNING event was evicted
                self.worker = facts["processing_on"]
        if facts["task_state"] == "erred":
            with contextlib.suppress(Exception):  # best effort: status falls back to events
                distributed_wait([self.future], timeout=5)

    def on_worker_lost(self, worker: str | None) -> None:
        """A worker died while running this; beyond ``retries`` it is an error, not a rerun."""
        self.worker_deaths += 1
        if self.worker_deaths <= self.retries:
            log.warning(
                "<DSK30000012W>",
                "Worker %s died during training %s; retrying (%d of %d)",
                worker,
                self.id,
                self.worker_deaths,
                self.retries,
            )
            return
        reason = DaskBackendError(
            f"Training {self.id} failed: Dask worker {worker} died while running it "
            f"(after {self.worker_deaths - 1} retries; set retries to allow reruns)."
        )

        def fail() -> None:  # off the client's event loop: both make blocking client calls
            self._finish(JobStatus.ERRORED, reason)
            self._stop_everywhere()

        threading.Thread(target=fail, daemon=True).start()

    def _on_future_done(self, future: Future) -> None:
        with self._lock:
            self.completion_time = self.completion_time or time.time()
        self._done.set()

    def _finish(self, outcome: JobStatus, reason: Exception | None = None) -> None:
        with self._lock:
            if self._outcome is None and not self.future.done():
                self._outcome = outcome
                if reason is not None:
                    self._errors = [reason]
            self.completion_time = self.completion_time or time.time()
        self._done.set()
        if reason is not None or outcome is JobStatus.CANCELED:
            self.client.log_event(
                events.STATE_TOPIC,
                {
                    "id": self.id,
                    "key": self.key,
                    "state": events.CANCELED if outcome is JobStatus.CANCELED else events.ERRORED,
                    "time": self.completion_time,
                    "error": str(reason) if reason else None,
                },
            )

    @property
    def status(self) -> JobStatus:
        if self._outcome is not None:
            return self._outcome
        future_status = self.future.status
        if future_status == "finished" or self.finished_once:
            # Once finished, a lost result (being recomputed, or TrainingResultLost) is
            # still a completed training.
            return JobStatus.COMPLETED
        if future_status == "error":
            exception = self._exception()
            if isinstance(exception, TrainingCanceled):
                return JobStatus.CANCELED
            if isinstance(exception, TrainingResultLost):
                return JobStatus.COMPLETED
            return JobStatus.ERRORED
        if future_status in ("cancelled", "lost"):
            return JobStatus.ERRORED  # a user's cancel is recorded in _outcome above
        return JobStatus.RUNNING if self.start_time is not None else JobStatus.QUEUED

    def _exception(self) -> BaseException | None:
        try:
            return self.future.exception(timeout=5)
        except Exception as err:  # noqa: BLE001 - the exception itself is the answer
            return err

    def errors(self) -> list[Exception] | None:
        status = self.status
        if status is not JobStatus.ERRORED:
            return None
        if self._errors:
            return list(self._errors)
        exception = self._exception()
        if exception is None or self.future.status in ("cancelled", "lost"):
            exception = DaskBackendError(
                f"Training {self.id} was lost: its Dask task is gone from the scheduler "
                f"(status {self.future.status}; e.g. the scheduler restarted). "
                f"Submit it again."
            )
        return [exception]

    def info(self) -> TrainingInfo:
        status = self.status
        return TrainingInfo(
            status=status,
            errors=self.errors() if status is JobStatus.ERRORED else None,
            submission_time=_to_datetime(self.submission_time),
            completion_time=_to_datetime(self.completion_time) if status.is_terminal else None,
        )

    # -- control ---------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the training ends; True if it did within ``timeout``."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        """Stop the training for real: destroy its thread on the worker, release the task."""
        if self.status.is_terminal:
            log.debug("Training %s already ended (%s); nothing to cancel", self.id, self.status)
            return
        self._finish(JobStatus.CANCELED)
        self._stop_everywhere()

    def _stop_everywhere(self) -> None:
        self._await_published()  # so the scheduler never gets a record of a forgotten task
        try:
            self.client.run(cancel_on_worker, self.id)
        except Exception as err:  # noqa: BLE001 - best effort, the future is cancelled anyway
            log.warning("<DSK30000013W>", "Could not reach workers to stop %s: %s", self.id, err)
        self.future.cancel()

    def result(self, timeout: float | None = None) -> ModuleBase:
        """The trained model, shipped from the worker as its saved archive."""
        self.wait(timeout)
        status = self.status
        if status is JobStatus.COMPLETED:
            return self.future.result(timeout=timeout)  # TrainingResultLost says what to do
        if status is JobStatus.ERRORED:
            raise self.errors()[0]
        if status is JobStatus.CANCELED:
            raise CaikitCoreException(
                status_code=CaikitCoreStatusCode.NOT_FOUND,
                message=f"Training {self.id} was canceled; it has no model",
            )
        raise TimeoutError(f"Training {self.id} still {status.name} after {timeout}s")

    def _await_published(self) -> None:
        """Wait for this training's background publish (see ``publisher``), if any."""
        if self._published is not None:
            with contextlib.suppress(Exception):  # a failed publish was logged already
                self._published.result(timeout=30)

    def release(self) -> None:
        """Forget the training on the scheduler (its dataset and future).

        The dataset is dropped only if it still holds this training's future: a newer
        training may have been published under the same (external) id.
        """
        TrainingMonitor.for_client(self.client).forget(self.id)
        self._await_published()

        def forget_on_scheduler(dask_scheduler: Any, key: str, dataset: str, metadata: str) -> None:
            # Metadata has no delete, and distributed keeps a ``published-<name>`` client
            # entry per dataset after unpublishing: both would grow by one per training.
            # (Nested, so it is sent by value: the scheduler needs no caikit_dask.)
            publish = dask_scheduler.extensions.get("publish")
            record = publish.datasets.get(dataset) if publish is not None else None
            if record is not None and key in record["keys"]:
                del publish.datasets[dataset]
                dask_scheduler.client_releases_keys(record["keys"], f"published-{dataset}")
            dask_scheduler.task_metadata.get(metadata, {}).pop(key, None)
            entry = dask_scheduler.clients.get(f"published-{dataset}")
            if entry is not None and not entry.wants_what:
                del dask_scheduler.clients[f"published-{dataset}"]

        with contextlib.suppress(Exception):
            self.client.run_on_scheduler(
                forget_on_scheduler,
                key=self.key,
                dataset=events.dataset_name(self.id),
                metadata=events.FINISHED_METADATA,
            )
        self.future.release()
