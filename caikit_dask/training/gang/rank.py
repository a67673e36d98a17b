"""What one rank of a gang training runs on its worker.

It tells the book it runs (rank 0 with a port free on its host) before anything
else, so the barrier measures scheduling only, and waits there until every rank
runs; then it sets the torch.distributed environment, unpickles its input and
runs ``train`` in caikit's stoppable thread (only rank 0 saves, and only rank 0's
model comes back). A coroutine on the worker's event loop watches the book and
destroys the thread when the gang is aborted. Ending, the rank reports how, a
failure *before* ending its process group: the failing rank is named, not a
peer whose collective broke because of it. A rank that failed or was stopped then
closes what its training left open to its peers (``sockets``), so that a peer
blocked in a collective with it fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import cloudpickle
from caikit.core.toolkit.concurrency.destroyable_thread import DestroyableThread
from distributed import get_worker
from distributed.comm.addressing import get_address_host, get_address_host_port

from ...errors import TrainingCanceled
from ..by_value import resolve_module_class
from ..on_worker import _train_and_save, forward_thread_logs, stoppable
from ..shipping import PickledModel
from .calls import WATCH, call_book, call_book_async
from .environment import (
    end_process_group,
    free_port,
    process_environment,
    rank_environment,
    reset_accelerate_state,
)
from .sockets import TrainingSockets

log = logging.getLogger("caikit_dask.training.gang")


class GangNotStarted(RuntimeError):
    """The gang was aborted before this rank trained (the driver knows why)."""


def run_rank(
    training_id: str,
    training_key: str,
    gang_id: str,
    rank: int,
    module_class_blob: bytes,
    pickled_args: list[bytes],
    pickled_kwargs: dict[str, bytes],
    save_path: str | None,
    log_lines: int,
) -> PickledModel | None:
    """The Dask task of rank ``rank``: rank 0's model (pickled), None for the others."""
    worker = get_worker()
    port = free_port(get_address_host(worker.address)) if rank == 0 else None
    gang = call_book(worker, "arrive", gang_id=gang_id, rank=rank, worker=worker.address, port=port)
    while not (gang.get("gone") or gang["aborted"] or gang["started"]):
        gang = call_book(worker, "watch", gang_id=gang_id, version=gang["version"], timeout=WATCH)
    if gang.get("gone") or gang["aborted"]:
        call_book(worker, "end", gang_id=gang_id, rank=rank, outcome="stopped")
        raise GangNotStarted(f"rank {rank}: {gang.get('aborted') or 'the gang is gone'}")
    report = _Report(worker, gang_id, rank)
    try:
        with process_environment(rank_environment(rank, gang["workers"], gang["port"])):
            reset_accelerate_state()
            try:
                model = _train(
                    worker,
                    training_id,
                    training_key,
                    (gang_id, gang["version"], gang["workers"]),
                    rank,
                    (module_class_blob, pickled_args, pickled_kwargs),
                    save_path if rank == 0 else None,
                    log_lines,
                    report,
                )
            finally:
                end_process_group()
                reset_accelerate_state()
        shipped = PickledModel.of(model) if rank == 0 else None  # before "finished": it may fail
    except BaseException as err:
        report.ended("failed", f"{type(err).__name__}: {err}")  # unless it said so already
        raise
    report.ended("finished")
    return shipped


class _Report:
    """How this rank ended, told to the book once."""

    def __init__(self, worker: Any, gang_id: str, rank: int):
        self.worker, self.gang_id, self.rank = worker, gang_id, rank
        self.told = False

    def ended(self, outcome: str, error: str | None = None) -> None:
        if self.told:
            return
        self.told = True
        with contextlib.suppress(Exception):  # the scheduler may be gone: the book with it
            call_book(
                self.worker,
                "end",
                gang_id=self.gang_id,
                rank=self.rank,
                outcome=outcome,
                error=error,
            )


def _train(
    worker: Any,
    training_id: str,
    training_key: str,
    gang: tuple[str, int, list[str]],
    rank: int,
    payload: tuple[bytes, list[bytes], dict[str, bytes]],
    save_path: str | None,
    log_lines: int,
    report: _Report,
) -> Any:
    """Run ``train`` in a stoppable thread watched by the book; its model, or raise."""
    gang_id, version, peers = gang
    module_class_blob, pickled_args, pickled_kwargs = payload
    module_class = resolve_module_class(cloudpickle.loads(module_class_blob))
    args = tuple(cloudpickle.loads(blob) for blob in pickled_args)
    kwargs = {name: cloudpickle.loads(blob) for name, blob in pickled_kwargs.items()}
    sockets = TrainingSockets()
    thread = DestroyableThread(_train_and_save, module_class, args, kwargs, save_path)
    thread.name = f"caikit-dask-training-{training_id}-rank-{rank}"
    forwarder = forward_thread_logs(worker, training_id, training_key, thread, log_lines, rank)
    watcher = asyncio.run_coroutine_threadsafe(
        _destroy_when_aborted(worker, gang_id, version, thread), worker.loop.asyncio_loop
    )
    try:
        with stoppable(training_id, thread):
            thread.start()
            thread.join()
    finally:
        watcher.cancel()
        logging.getLogger().removeHandler(forwarder)
    # Destroyed at all is stopped: the stop may land in the thread's own exception handler,
    # leaving it neither "canceled" nor "threw" (the gang fails or ends for another reason).
    canceled, error = thread.destroyed, thread.error if thread.threw else None
    if canceled:
        report.ended("stopped")
    elif error is not None:
        report.ended("failed", f"{type(error).__name__}: {error}")  # before its group ends
    end_process_group(error)
    if (canceled or error is not None) and "torch" in sys.modules:
        _free_peers(worker, sockets, peers, rank)  # a peer waiting on this rank fails at once
    if canceled:
        raise TrainingCanceled(f"Training {training_id}: rank {rank} was stopped")
    if error is not None:
        raise error
    return thread.get_or_throw()


def _free_peers(worker: Any, sockets: TrainingSockets, peers: list[str], rank: int) -> None:
    """Shut down what this rank's training still has open to its peers (``sockets``)."""
    try:
        dask = call_book(worker, "endpoints")["addresses"]
        own = {get_address_host_port(worker.address)[1]}
        http = getattr(worker, "http_server", None)
        if getattr(http, "port", None):
            own.add(http.port)
        shut = sockets.shut_down(peers, dask, own)
    except Exception as err:  # noqa: BLE001 - best effort: gloo's timeout remains
        log.warning("Rank %d could not close its connections to its peers: %s", rank, err)
        return
    if shut:
        log.info("Rank %d closed %d connection(s) its training left open to its peers", rank, shut)


async def _destroy_when_aborted(
    worker: Any, gang_id: str, version: int, thread: DestroyableThread
) -> None:
    """Destroy ``thread`` once the book aborts the gang (or forgets it)."""
    while True:
        try:
            gang = await call_book_async(
                worker, "watch", gang_id=gang_id, version=version, timeout=WATCH
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the scheduler may come back
            log.debug("Could not watch gang %s: %s", gang_id, err)
            await asyncio.sleep(1)
            continue
        if gang.get("gone") or gang["aborted"]:
            log.info("Stopping %s: %s", thread.name, gang.get("aborted") or "the gang is gone")
            thread.destroy()
            return
        version = gang["version"]
