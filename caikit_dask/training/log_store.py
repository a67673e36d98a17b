"""A training's log lines, kept on the scheduler so any process can read them.

The worker sends each line its training thread logs as an event (``on_worker``);
the scheduler keeps only the last ``distributed.admin.low-level-log-length`` events
per topic, shared by every training, so a scheduler plugin copies each line into a
deque of its own training, bounded by the trainer's ``log_lines``. The worker
installs the plugin before a training starts (idempotent: once per scheduler,
again after a scheduler restart). The plugin class is built inside a function, so
cloudpickle ships it by value: the scheduler does not need caikit-dask installed.
"""

from __future__ import annotations

from typing import Any

from distributed import Client

from ..dask_internals import subscribe_on_scheduler, topic_events
from .events import LOG_STORE, LOG_TOPIC, STATE_TOPIC

FORGOTTEN_KEPT = 10_000  # task keys of forgotten trainings the plugin remembers


def log_store_plugin() -> Any:
    """A new scheduler plugin keeping each training's last ``keep`` log lines."""
    from collections import deque

    from distributed.diagnostics.plugin import SchedulerPlugin

    topic, topics = LOG_TOPIC, (LOG_TOPIC, STATE_TOPIC)
    keep_forgotten = FORGOTTEN_KEPT

    class TrainingLogStore(SchedulerPlugin):
        name = LOG_STORE

        def __init__(self) -> None:
            # training id -> (task key, deque of (run, seq, line)); a rerun of the id
            # under a new key starts a new log.
            self.logs: dict[str, tuple[str, deque]] = {}
            # Task keys of forgotten trainings: their late events are dropped on arrival.
            self.forgotten: dict[str, None] = {}
            self.scheduler: Any = None

        async def start(self, scheduler: Any) -> None:
            self.scheduler = scheduler

        def forget(self, key: str) -> None:
            """The training is forgotten: an event of it still on its way goes too."""
            self.forgotten[key] = None
            while len(self.forgotten) > keep_forgotten:
                del self.forgotten[next(iter(self.forgotten))]

        def log_event(self, name: str, msg: Any) -> None:
            if name in topics and isinstance(msg, dict) and msg.get("key") in self.forgotten:
                # Sent before the training was forgotten, arrived after (the worker's and
                # the deleting client's streams are not ordered with the delete).
                kept = topic_events(self.scheduler, name) if self.scheduler else None
                if kept and kept[-1][1] is msg:
                    kept.pop()
                return
            if name != topic or not isinstance(msg, dict) or "line" not in msg:
                return
            training_id, key = msg.get("id"), msg.get("key")
            kept = self.logs.get(training_id)
            if kept is None or kept[0] != key:
                kept = self.logs[training_id] = (key, deque(maxlen=msg.get("keep") or 1000))
            kept[1].append((msg.get("run"), msg.get("seq"), msg["line"]))

    return TrainingLogStore()


def read_logs(
    client: Client, training_id: str, key: str, subscribe: bool = False
) -> list[tuple[str, int, str]]:
    """The training's kept lines as (run, seq, line), oldest first.

    With ``subscribe``, this client is subscribed to the log topic in the same step,
    so no line logged after the read can miss it (see ``DaskTraining.logs``).
    """
    client_id = client.id if subscribe else None
    name, topic = LOG_STORE, LOG_TOPIC

    def read(dask_scheduler: Any) -> list:
        if client_id is not None:
            subscribe_on_scheduler(dask_scheduler, topic, client_id)
        store = dask_scheduler.plugins.get(name)
        kept = store.logs.get(training_id) if store is not None else None
        return list(kept[1]) if kept is not None and kept[0] == key else []

    return client.run_on_scheduler(read)
