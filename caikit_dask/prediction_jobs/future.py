"""``DaskJobPredictorFuture``: the caller's handle on one prediction job.

It holds the job's Dask future; the status comes from that future and the job's
record on the scheduler, so a handle found by id in another process reports the
same thing as the submitter's.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import alog
from caikit.core.data_model import DataObjectBase, JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.model_management.job_predictor_base import (
    JobPredictorFutureBase,
    JobPredictorInfo,
)
from distributed import Client, Future

from ..errors import DaskBackendError, PredictionCanceled
from . import on_scheduler
from .on_worker import cancel_on_worker

log = alog.use_channel("DASK-JOBS")


def _to_datetime(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds) if seconds is not None else None


class DaskJobPredictorFuture(JobPredictorFutureBase):
    """One prediction job running (or ran) as a Dask task."""

    def __init__(self, job_id: str, client: Client, future: Future):
        super().__init__(future_name="", future_id=job_id, use_reversible_hash=False)
        self.client = client
        self.future = future
        self._final: JobPredictorInfo | None = None
        self._seen_ending: float | None = None
        self._done = threading.Event()
        future.add_done_callback(lambda _: self._done.set())

    @property
    def task_key(self) -> str:
        return self.future.key

    @property
    def completion_time(self) -> datetime | None:
        return self.get_info().completion_time

    def get_info(self) -> JobPredictorInfo:
        """Status, errors and times; one scheduler round trip until the job has ended."""
        if self._final is not None:
            return self._final
        record = on_scheduler.read_record(self.client, self.id)
        status, errors = self._status(record)
        completion = None
        if status.is_terminal:
            self._seen_ending = self._seen_ending or time.time()
            completion = record.get("completion_time") or self._seen_ending
        info = JobPredictorInfo(
            status=status,
            errors=errors,
            submission_time=_to_datetime(record.get("submission_time")),
            completion_time=_to_datetime(completion),
        )
        if status.is_terminal and record.get("completion_time"):
            self._final = info
        return info

    def _status(self, record: dict[str, Any]) -> tuple[JobStatus, list[Exception] | None]:
        if record.get("canceled"):
            return JobStatus.CANCELED, None
        state = self.future.status
        if state == "pending" and record.get("completion_time"):
            # The task ended; a future just found by id learns that from the scheduler soon.
            self._done.wait(10)
            state = self.future.status
        if state == "finished":
            return JobStatus.COMPLETED, None
        if state == "error":
            exception = self._exception()
            if isinstance(exception, PredictionCanceled):
                return JobStatus.CANCELED, None
            return JobStatus.ERRORED, [exception]
        if state in ("cancelled", "lost"):
            return JobStatus.ERRORED, [
                DaskBackendError(
                    f"Prediction {self.id} was lost: its Dask task is gone from the scheduler "
                    f"(status {state}; e.g. the scheduler restarted). Start it again."
                )
            ]
        return (JobStatus.RUNNING if record.get("start_time") else JobStatus.QUEUED), None

    def _exception(self) -> BaseException:
        try:
            return self.future.exception(timeout=10)
        except Exception as err:  # noqa: BLE001 - the failure to fetch it is the answer
            return err

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; True if it did within ``timeout`` seconds."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        """Stop the job for real: its thread, its call on a model's actor, and its task."""
        if self.get_info().status.is_terminal:
            log.debug("Prediction %s already ended; nothing to cancel", self.id)
            return
        on_scheduler.mark_canceled(self.client, self.id)
        try:
            self.client.run(cancel_on_worker, self.id, self.task_key)
        except Exception as err:  # noqa: BLE001 - the task is cancelled below anyway
            log.warning("<DSK70000010W>", "Could not reach workers to stop %s: %s", self.id, err)
        self.future.cancel(force=True)

    def result(self, timeout: float | None = None) -> DataObjectBase:
        """The prediction's result; the module's own exception if it failed."""
        self.wait(timeout)
        info = self.get_info()
        if info.status is JobStatus.COMPLETED:
            return self.future.result(timeout=timeout)
        if info.status is JobStatus.ERRORED:
            raise info.errors[0]
        if info.status is JobStatus.CANCELED:
            raise CaikitCoreException(
                CaikitCoreStatusCode.NOT_FOUND, f"Prediction {self.id} was canceled; no result"
            )
        raise TimeoutError(f"Prediction {self.id} still {info.status.name} after {timeout}s")

    def forget(self) -> None:
        """Drop the job and its result from the scheduler (retention is over)."""
        on_scheduler.forget(self.client, self.id, self.task_key)
        self.future.release()

    def __repr__(self) -> str:
        return f"<DaskJobPredictorFuture {self.id} {self.get_info().status.name}>"
