"""Names of the scheduler event topics trainings report on.

Events live on the scheduler, so a client in another process (a restarted
runtime) can replay them with ``Client.get_events`` to learn a training's state.
"""

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
