"""Names of the scheduler event topics trainings report on, and replaying them.

Events live on the scheduler, so a client in another process (a restarted
runtime) can replay them to learn a training's state. The scheduler keeps only
the last ``distributed.admin.low-level-log-length`` events per topic, so a replay
also reads what outlives them: the task's state and the finished-once marker.
"""

from typing import Any

STATE_TOPIC = "caikit-dask-training"
LOG_TOPIC = "caikit-dask-training-log"

RUNNING = "running"
FINISHED = "finished"
ERRORED = "errored"
CANCELED = "canceled"

DATASET_PREFIX = "caikit-dask-training-"
FINISHED_METADATA = "caikit-dask-finished-trainings"

# Topics a client following trainings subscribes to ("all" carries worker removals).
SUBSCRIBED_TOPICS = (STATE_TOPIC, LOG_TOPIC, "all")


def dataset_name(training_id: str) -> str:
    """The published dataset that keeps a training's future alive across clients."""
    return f"{DATASET_PREFIX}{training_id}"


def read_scheduler_facts(client: Any, training_id: str, key: str) -> dict[str, Any]:
    """One training's events, task state and finish time, filtered on the scheduler in one trip.

    The function sent is a closure, so cloudpickle ships it by value: the scheduler
    does not need caikit-dask installed.
    """
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
