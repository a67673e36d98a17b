"""What the scheduler keeps about prediction jobs, so any client finds them by id.

Each job has a published dataset holding its Dask future (which keeps the task
and its result alive when the submitting process goes away) and a scheduler
metadata record with its times and whether it was canceled. Workers and any
client write the record; it is read in one round trip. Forgetting a job runs on
the scheduler itself (a closure, shipped by value).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from distributed import Client

from ..dask_internals import drop_published

DATASET_PREFIX = "caikit-dask-prediction-"
METADATA_KEY = "caikit-dask-prediction-jobs"


def dataset_name(job_id: str) -> str:
    return f"{DATASET_PREFIX}{job_id}"


def new_record(task_key: str, submission_time: float) -> dict[str, Any]:
    return {
        "key": task_key,
        "submission_time": submission_time,
        "start_time": None,
        "completion_time": None,
        "canceled": None,
    }


def write_record(client: Client, job_id: str, record: dict[str, Any]) -> None:
    client.set_metadata([METADATA_KEY, job_id], record)


def read_record(client: Client, job_id: str) -> dict[str, Any]:
    return client.get_metadata([METADATA_KEY, job_id], default=None) or {}


def mark_canceled(client: Client, job_id: str) -> float:
    """Record the cancel first, so every process reports CANCELED from now on."""
    now = time.time()
    client.set_metadata([METADATA_KEY, job_id, "canceled"], now)
    client.set_metadata([METADATA_KEY, job_id, "completion_time"], now)
    return now


def forget(client: Client, job_id: str, task_key: str) -> None:
    """Remove the job's dataset and record from the scheduler (after its retention)."""
    dataset, metadata = dataset_name(job_id), METADATA_KEY

    def forget_on_scheduler(dask_scheduler: Any) -> None:
        # A closure, so cloudpickle sends it by value: the scheduler needs no caikit_dask.
        drop_published(dataset, task_key, dask_scheduler=dask_scheduler)
        jobs = dask_scheduler.task_metadata.get(metadata, {})
        if jobs.get(job_id, {}).get("key") == task_key:
            del jobs[job_id]

    with contextlib.suppress(Exception):  # the scheduler may be gone; nothing to keep then
        client.run_on_scheduler(forget_on_scheduler)
