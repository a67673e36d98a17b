"""What runs on the scheduler for a training: reading its facts and forgetting it.

Events and the finished-once marker live on the scheduler, so a client in another
process (a restarted runtime) can replay them to learn a training's state. The
scheduler keeps only the last ``distributed.admin.low-level-log-length`` events
per topic, so a replay also reads what outlives them: the task's state and the
marker. Each function here sends a nested function, which cloudpickle ships by
value: the scheduler does not need caikit-dask installed.
"""

from __future__ import annotations

from typing import Any

from distributed import Client

from .events import FINISHED_METADATA, STATE_TOPIC, dataset_name


def read_training_facts(client: Client, training_id: str, key: str) -> dict[str, Any]:
    """One training's events, task state and finish time, filtered on the scheduler in one trip."""
    topic, finished = STATE_TOPIC, FINISHED_METADATA

    def facts(dask_scheduler: Any) -> dict[str, Any]:
        task = dask_scheduler.tasks.get(key)
        processing_on = getattr(task, "processing_on", None)
        return {
            "events": [
                msg
                for _, msg in dask_scheduler.get_events(topic)
                if isinstance(msg, dict) and msg.get("id") == training_id
            ],
            "task_state": task.state if task is not None else None,
            "processing_on": processing_on.address if processing_on is not None else None,
            "finished_at": dask_scheduler.get_metadata(keys=[finished, key], default=None),
        }

    return client.run_on_scheduler(facts)


def forget_training(client: Client, training_id: str, key: str) -> None:
    """Drop the training's dataset and finished marker, if the dataset still holds ``key``.

    A newer training may have been published under the same (external) id: its
    dataset stays.
    """
    dataset, metadata = dataset_name(training_id), FINISHED_METADATA

    def forget(dask_scheduler: Any) -> None:
        # Metadata has no delete, and distributed keeps a ``published-<name>`` client
        # entry per dataset after unpublishing: both would grow by one per training.
        publish = dask_scheduler.extensions.get("publish")
        record = publish.datasets.get(dataset) if publish is not None else None
        if record is not None and key in record["keys"]:
            del publish.datasets[dataset]
            dask_scheduler.client_releases_keys(record["keys"], f"published-{dataset}")
        dask_scheduler.task_metadata.get(metadata, {}).pop(key, None)
        entry = dask_scheduler.clients.get(f"published-{dataset}")
        if entry is not None and not entry.wants_what:
            del dask_scheduler.clients[f"published-{dataset}"]

    client.run_on_scheduler(forget)
