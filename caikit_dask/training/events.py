"""The names a training is known by on the cluster, shared by all three sides.

The worker reports a training's state and log on scheduler event topics; the
caller's client follows them (``monitor``) and a client in another process
replays them (``on_scheduler``); a scheduler plugin keeps each training's log
(``log_store``). A training's future is kept alive under a
published dataset name; the scheduler marks a finished task in its metadata.
"""

STATE_TOPIC = "caikit-dask-training"
LOG_TOPIC = "caikit-dask-training-log"
# The scheduler plugin keeping each training's last log lines (``log_store``).
LOG_STORE = "caikit-dask-training-logs"

RUNNING = "running"
FINISHED = "finished"
ERRORED = "errored"
CANCELED = "canceled"

DATASET_PREFIX = "caikit-dask-training-"
FINISHED_METADATA = "caikit-dask-finished-trainings"
# Each run of a training's task, as it starts (``worker_death``): [RUNS_METADATA, key].
RUNS_METADATA = "caikit-dask-training-runs"

# The scheduler plugin booking workers for trainings of many ranks (``gang.book``), and the
# scheduler handler its ranks and drivers call it through.
GANG_BOOK = "caikit-dask-gang-book"
GANG_HANDLER = "caikit_dask_gang"

# Topics a client following trainings subscribes to ("all" carries worker removals).
SUBSCRIBED_TOPICS = (STATE_TOPIC, LOG_TOPIC, "all")


def dataset_name(training_id: str) -> str:
    """The published dataset that keeps a training's future alive across clients."""
    return f"{DATASET_PREFIX}{training_id}"
