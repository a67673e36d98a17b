"""``DaskTraining``: the caller's handle on one training's Dask task.

It reads the training's status from its state (``state``, fed by the monitor's
events) and its log from the scheduler (``log_store``), and acts on the task:
wait, cancel, result, release and delete. Building and submitting the task, or
finding it again by id, is ``submit``'s job.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Iterator
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

from ..errors import DaskBackendError, log
from . import events
from .gang.book import cancel_training
from .log_store import read_logs
from .monitor import TrainingMonitor
from .on_scheduler import forget_training
from .on_worker import cancel_on_worker
from .shipping import PickledModel, ShippedModel
from .state import TrainingState
from .worker_death import death_error


def _to_datetime(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp) if timestamp is not None else None


_ENDED = (events.FINISHED, events.ERRORED, events.CANCELED)


def _unseen(lines: Any, seen: set[tuple[str, int]]) -> Iterator[str]:
    """The lines (run, seq, line) not yielded before, marking them seen."""
    for run, seq, line in lines:
        if (run, seq) not in seen:
            seen.add((run, seq))
            yield line


def training_of(obj: Any) -> DaskTraining:
    """A DaskTraining from itself or from a DaskModelTrainFuture (``.training``)."""
    return getattr(obj, "training", None) or obj


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
        save_path: str | None = None,
        world_size: int = 1,
    ):
        self.id = training_id
        self.world_size = world_size  # ranks (``gang``); its task is then their driver
        self.client = client
        self.future = future
        self.key = future.key
        self.resources = dict(resources or {})
        self.module_class = module_class
        self.save_path = save_path
        self.submission_time = submission_time
        self.state = TrainingState(self.key, retries, world_size)
        # Done once the record is published (see ``publisher``); None: published elsewhere.
        self.published: concurrent.futures.Future | None = None
        future.add_done_callback(lambda _: self.state.task_ended())

    # -- what the state says ---------------------------------------------------------------

    retries = property(lambda self: self.state.retries)
    start_time = property(lambda self: self.state.start_time)
    completion_time = property(lambda self: self.state.completion_time)
    worker = property(lambda self: self.state.worker)  # rank 0's, for a gang
    workers = property(lambda self: self.state.workers)  # one per rank
    worker_deaths = property(lambda self: self.state.worker_deaths)
    finished_once = property(lambda self: self.state.finished_once)

    # -- the monitor's listener (``monitor.TrainingListener``) -------------------------------

    def apply_event(self, msg: dict[str, Any]) -> None:
        """Fold one scheduler event about this training into its state (from the monitor)."""
        self.state.apply_event(msg)

    def on_worker_lost(self, worker: str | None) -> None:
        """A worker died while running this; beyond ``retries`` it is an error, not a rerun."""
        if not self.state.worker_died():
            log.warning(
                "<DSK30000012W>",
                "Worker %s died during training %s; retrying (%d of %d)",
                worker,
                self.id,
                self.state.worker_deaths,
                self.retries,
            )
            return

        def fail() -> None:  # off the client's event loop: these make blocking client calls
            reason = self._death_on(worker) or DaskBackendError(
                f"Training {self.id} failed: Dask worker {worker} died while running it "
                f"(after {self.state.worker_deaths - 1} retries; set retries to allow reruns)."
            )
            self.end(JobStatus.ERRORED, reason)
            self.stop_everywhere()

        threading.Thread(target=fail, daemon=True).start()

    def _death_on(self, worker: str | None) -> Exception | None:
        """How this training's run on ``worker`` died, as its worker's run says (an OOM kill
        as caikit says it, see ``worker_death``); None if that run left no record."""
        with contextlib.suppress(Exception):  # the scheduler may be gone too
            runs = self.client.get_metadata([events.RUNS_METADATA, self.key], default=None) or []
            run = next((run for run in reversed(runs) if run["worker"] == worker), None)
            if run is not None:
                return self.client.sync(death_error, self.client.rpc, self.id, run)
        return None

    # -- decisions and replays ----------------------------------------------------------------

    def apply_scheduler_facts(self, facts: dict[str, Any]) -> None:
        """Fold in what a replay read on the scheduler (see ``on_scheduler``).

        A failed task is waited for briefly, so that this client's future carries its
        exception before anyone reads the status (a finished one has its marker).
        """
        self.state.apply_scheduler_facts(facts)
        if facts["task_state"] == "erred":
            with self.client.as_current(), contextlib.suppress(Exception):  # best effort
                distributed_wait([self.future], timeout=5)

    def end(self, outcome: JobStatus, reason: Exception | None = None) -> None:
        """Decide the outcome here (cancel, a failure the caller saw) and tell other clients.

        The announcement comes back to this client through the monitor too; the state
        drops that echo (``TrainingState.expect_echo``): the decision is applied once,
        here. Other clients apply the announcement as before.
        """
        self.state.decide(outcome, reason, task_done=self.future.done())
        if reason is not None or outcome is JobStatus.CANCELED:
            announcement = {
                "id": self.id,
                "key": self.key,
                "state": events.CANCELED if outcome is JobStatus.CANCELED else events.ERRORED,
                "time": self.completion_time,
                "error": str(reason) if reason else None,
            }
            self.state.expect_echo(announcement)  # before it is sent: the echo may be quick
            self.client.log_event(events.STATE_TOPIC, announcement)

    @property
    def status(self) -> JobStatus:
        return self.state.status(self.future.status, self._exception)

    def _exception(self) -> BaseException | None:
        try:
            return self.future.exception(timeout=5)
        except Exception as err:  # noqa: BLE001 - the exception itself is the answer
            return err

    def errors(self) -> list[Exception] | None:
        status = self.status
        if status is not JobStatus.ERRORED:
            return None
        if self.state.errors:
            return list(self.state.errors)
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
        return self.state.done.wait(timeout)

    def cancel(self) -> None:
        """Stop the training for real: destroy its thread on the worker, release the task."""
        if self.status.is_terminal:
            log.debug("Training %s already ended (%s); nothing to cancel", self.id, self.status)
            return
        self.end(JobStatus.CANCELED)
        self.stop_everywhere()

    def stop_everywhere(self) -> None:
        """Stop the training's thread on its worker (every rank's, and the driver of a
        gang, which also stops a driver that has not started yet); cancel its task."""
        self._await_published()  # so the scheduler never gets a record of a forgotten task
        try:
            if self.world_size > 1:
                self.client.run_on_scheduler(cancel_training, self.key)
            self.client.run(cancel_on_worker, self.id)
        except Exception as err:  # noqa: BLE001 - best effort, the future is cancelled anyway
            log.warning("<DSK30000013W>", "Could not reach workers to stop %s: %s", self.id, err)
        with contextlib.suppress(Exception):  # the client closed meanwhile: nothing to cancel
            self.future.cancel()

    def result(self, timeout: float | None = None) -> ModuleBase:
        """The trained model, shipped from the worker as its saved archive."""
        self.wait(timeout)
        status = self.status
        if status is JobStatus.COMPLETED:
            # TrainingResultLost says what to do. A worker in this process (an in-process
            # LocalCluster) hands the ShippedModel over without pickling it.
            result = self.future.result(timeout=timeout)
            return result.model if isinstance(result, (ShippedModel, PickledModel)) else result
        if status is JobStatus.ERRORED:
            raise self.errors()[0]
        if status is JobStatus.CANCELED:
            raise CaikitCoreException(
                status_code=CaikitCoreStatusCode.NOT_FOUND,
                message=f"Training {self.id} was canceled; it has no model",
            )
        raise TimeoutError(f"Training {self.id} still {status.name} after {timeout}s")

    # -- log -------------------------------------------------------------------------------

    def logs(self, follow: bool = False) -> list[str] | Iterator[str]:
        """The lines the training logged on its worker (the last ``log_lines`` of them).

        With ``follow``, an iterator: the lines so far, then each new line as it arrives,
        ending when the training ends.
        """
        if follow:
            return self._follow_logs()
        return [line for _, _, line in read_logs(self.client, self.id, self.key)]

    def _follow_logs(self) -> Iterator[str]:
        monitor = TrainingMonitor.for_client(self.client)
        messages: queue.Queue = queue.Queue()
        monitor.listen(self.id, messages)  # before the read, so no line falls in between
        self.future.add_done_callback(lambda _: messages.put(None))
        seen: set[tuple[str, int]] = set()
        try:
            yield from _unseen(read_logs(self.client, self.id, self.key, subscribe=True), seen)
            while True:
                try:
                    msg = messages.get(timeout=1.0)
                except queue.Empty:  # a safety net: the end always puts a message
                    if self.state.done.is_set():
                        break
                    continue
                if msg is None:
                    break
                if msg.get("key") != self.key:
                    continue
                if msg.get("state") in _ENDED and "worker" in msg:
                    break  # the worker's own report: its lines came before it
                if "line" in msg:
                    yield from _unseen([(msg.get("run"), msg.get("seq"), msg["line"])], seen)
            # Lines the end overtook on their way here are in the kept log by now.
            yield from _unseen(read_logs(self.client, self.id, self.key), seen)
        finally:
            monitor.unlisten(self.id, messages)

    def _await_published(self) -> None:
        """Wait for this training's background publish, if any."""
        if self.published is not None:
            with contextlib.suppress(Exception):  # a failed publish was logged already
                self.published.result(timeout=30)

    def release(self) -> None:
        """Forget the training on the scheduler (its dataset, marker, log and future)."""
        TrainingMonitor.for_client(self.client).forget(self.id)
        self._await_published()
        with contextlib.suppress(Exception):
            forget_training(self.client, self.id, self.key)
        self.future.release()

    def delete(self) -> None:
        """Stop the training if it runs and leave nothing of it on the scheduler.

        Unlike ``release``, its task goes even if other clients hold it (they see it
        cancelled), and a running one has reported its end before it is forgotten.
        """
        if not self.status.is_terminal:
            self.end(JobStatus.CANCELED)
            self._await_published()
            try:
                if self.world_size > 1:
                    self.client.run_on_scheduler(cancel_training, self.key)
                self.client.run(cancel_on_worker, self.id, 10)  # wait up to 10 s
            except Exception as err:  # noqa: BLE001 - the task is cancelled below anyway
                log.warning(
                    "<DSK30000015W>", "Could not reach workers to stop %s: %s", self.id, err
                )
        TrainingMonitor.for_client(self.client).forget(self.id)
        self._await_published()
        forget_training(self.client, self.id, self.key, for_all_clients=True)
        self.future.release()
