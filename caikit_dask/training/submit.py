"""How a training reaches Dask, and how any client finds it again by id or lists them all.

``submit`` checks the call (``checks``), submits ``on_worker.run_training`` as
one task (with ``world_size`` > 1, ``gang.driver.run_gang_training``, the driver
of its ranks), has the monitor follow it and publishes its record in the background
(``publisher``), so the training outlives the submitting client. ``reattach``
reads that record and replays the training's state from the scheduler;
``list_all`` does that for every training at once, in one scheduler call.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any

import cloudpickle
from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.modules import ModuleBase
from distributed import Client
from distributed import wait as distributed_wait

from ..cluster_state import worker_resources
from ..dask_internals import desire_keys
from ..errors import DaskBackendError, error, log
from ..metrics.trainings import training_started
from ..resources import describe_missing, workers_offering
from .checks import module_class_for_workers, pickle_arguments
from .events import dataset_name
from .gang import room
from .gang.driver import run_gang_training
from .handle import DaskTraining
from .monitor import TrainingMonitor
from .on_scheduler import read_all_trainings, read_training_facts, record_of
from .on_worker import run_training
from .publisher import DatasetPublisher


def submit(
    client: Client,
    module_class: type[ModuleBase],
    args: tuple,
    kwargs: dict,
    save_path: str | None,
    training_id: str,
    options: dict[str, Any],
    resource_timeout: float,
    max_payload_size: int | None = None,
    log_lines: int = 1000,
    world_size: int = 1,
) -> DaskTraining:
    """Check the call, submit the task, publish it; returns without waiting for it.

    With ``world_size`` > 1 the task is the driver of that many ranks (``gang``).
    """
    pickled_args, pickled_kwargs = pickle_arguments(args, kwargs, max_payload_size)
    shipped_class = module_class_for_workers(client, module_class)
    resources = options.get("resources") or {}
    if world_size > 1:
        matching = room.matching_workers(client, resources)
        can_run_now = matching >= world_size
        missing = f"Training cannot start: {room.describe_missing(world_size, matching, resources)}"
    else:
        offered = worker_resources(client) if resources else {}
        can_run_now = not resources or workers_offering(offered, resources)
        missing = describe_missing(offered, resources) if not can_run_now else ""
    if not can_run_now and resource_timeout == 0:
        error("<DSK30000010E>", DaskBackendError(missing))
    monitor = TrainingMonitor.for_client(client)  # subscribed before the task can start
    monitor.expect(training_id)
    submission_time = time.time()
    key = f"caikit-training-{training_id}-{uuid.uuid4().hex[:8]}"
    if world_size > 1:
        future = client.submit(
            run_gang_training,
            training_id,
            cloudpickle.dumps(shipped_class),
            pickled_args,
            pickled_kwargs,
            save_path,
            log_lines,
            world_size,
            {name: options[name] for name in ("resources", "priority") if name in options},
            options.get("retries", 0),
            key=key,
            pure=False,
            **{name: value for name, value in options.items() if name != "resources"},
        )
    else:
        future = client.submit(
            run_training,
            training_id,
            shipped_class,
            pickled_args,
            pickled_kwargs,
            save_path,
            log_lines,
            options.get("retries", 0),
            key=key,
            pure=False,
            **options,
        )
    training = DaskTraining(
        client,
        training_id,
        future,
        submission_time,
        retries=options.get("retries", 0),
        resources=resources,
        module_class=module_class,
        save_path=save_path,
        world_size=world_size,
    )
    monitor.follow(training)
    training_started(training)
    training.published = DatasetPublisher.for_client(client).publish(
        dataset_name(training_id),
        {
            "future": future,
            "submission_time": submission_time,
            "retries": training.retries,
            "resources": resources,
            "module": f"{module_class.__module__}.{module_class.__qualname__}",
            "save_path": save_path,
            "world_size": world_size,
        },
    )
    if world_size > 1 and not can_run_now:
        room.watch_room(training, world_size, resource_timeout)
    elif not can_run_now:
        _fail_unless_resources_appear(training, resource_timeout)
    return training


def reattach(client: Client, training_id: str) -> DaskTraining:
    """The training with this id, submitted by any client of the same scheduler."""
    try:
        record = client.get_dataset(dataset_name(training_id))
    except KeyError:
        raise CaikitCoreException(
            status_code=CaikitCoreStatusCode.NOT_FOUND,
            message=f"Unknown training_id: {training_id}",
        ) from None
    training = _from_record(client, training_id, record)
    TrainingMonitor.for_client(client).follow(training)
    facts = read_training_facts(client, training_id, training.key)
    for msg in facts["events"]:
        training.apply_event(msg)
    training.apply_scheduler_facts(facts)
    return training


def list_all(client: Client) -> list[DaskTraining]:
    """Every training published on the scheduler, with its state, from one scheduler call."""
    monitor = TrainingMonitor.for_client(client)
    trainings, erred, bound = [], [], []
    for listed in read_all_trainings(client):
        known = monitor.followed(listed["id"])
        if isinstance(known, DaskTraining) and known.key == listed["key"]:
            trainings.append(known)  # this process follows it already
            continue
        training = _from_record(client, listed["id"], record_of(client, listed))
        bound.append(training.key)
        monitor.follow(training)
        for msg in listed["events"]:
            training.apply_event(msg)
        training.state.apply_scheduler_facts(listed)
        if listed["task_state"] == "erred":
            erred.append(training.future)
        trainings.append(training)
    if bound:
        # What get_dataset does after binding (for these keys only): the scheduler now
        # reports their state to this client.
        desire_keys(client, bound)
    if erred:  # their futures carry the exception before anyone reads a status
        with client.as_current(), contextlib.suppress(TimeoutError):
            distributed_wait(erred, timeout=5)
    return trainings


def _from_record(client: Client, training_id: str, record: dict[str, Any]) -> DaskTraining:
    return DaskTraining(
        client,
        training_id,
        record["future"],
        record["submission_time"],
        retries=record.get("retries", 0),
        resources=record.get("resources"),
        save_path=record.get("save_path"),
        world_size=record.get("world_size", 1),
    )


def _fail_unless_resources_appear(training: DaskTraining, resource_timeout: float) -> None:
    """Fail the training if no worker able to run it shows up in time."""

    def check() -> None:
        if training.state.done.is_set() or training.start_time is not None:
            return
        offered = worker_resources(training.client)
        if workers_offering(offered, training.resources):
            return
        reason = (
            f"Training {training.id} could not start within resource_timeout="
            f"{resource_timeout:g}s: {describe_missing(offered, training.resources)}."
        )
        log.warning("<DSK30000011W>", reason)
        training.end(JobStatus.ERRORED, DaskBackendError(reason))
        training.future.cancel()

    timer = threading.Timer(resource_timeout, check)
    timer.daemon = True
    timer.start()
