"""What runs on the scheduler for trainings: reading their facts, listing, forgetting.

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

from ..dask_internals import (
    cancel_for_all_clients,
    decode_published,
    drop_published,
    published_datasets,
    published_raw,
    topic_events,
)
from .events import (
    DATASET_PREFIX,
    FINISHED_METADATA,
    GANG_BOOK,
    LOG_STORE,
    LOG_TOPIC,
    RUNS_METADATA,
    STATE_TOPIC,
    dataset_name,
)


def _gang_facts_reader(book: str = GANG_BOOK) -> Any:
    """``read(dask_scheduler, key)``: whether the gang of the training ``key`` (its driver's
    task) has started, and on which workers, from the gang book; None when it has no gang
    there. Made here, nested, so that it too travels by value."""

    def read(dask_scheduler: Any, key: str) -> dict | None:
        plugin = dask_scheduler.plugins.get(book)
        if plugin is None:
            return None
        gang = plugin.gangs.get(plugin.drivers.get(key, ""))
        if gang is None:
            return None
        return {"started": gang["started"], "workers": gang["workers"]}

    return read


def read_training_facts(client: Client, training_id: str, key: str) -> dict[str, Any]:
    """One training's events, task state and finish time, filtered on the scheduler in one trip."""
    topic, finished, gang_facts = STATE_TOPIC, FINISHED_METADATA, _gang_facts_reader()

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
            "gang": gang_facts(dask_scheduler, key),
        }

    return client.run_on_scheduler(facts)


def read_all_trainings(client: Client) -> list[dict[str, Any]]:
    """Every published training's record and facts, gathered on the scheduler in one trip.

    Each entry has the training ``id``, its task ``key``, its ``record`` still
    serialized as published (``record_of`` reads it) and the same facts as
    ``read_training_facts``.
    """
    prefix, topic, finished = DATASET_PREFIX, STATE_TOPIC, FINISHED_METADATA
    gang_facts = _gang_facts_reader()

    def gather(dask_scheduler: Any) -> list[dict[str, Any]]:
        events_by_id: dict[str, list] = {}
        for _, msg in dask_scheduler.get_events(topic):
            if isinstance(msg, dict) and "id" in msg:
                events_by_id.setdefault(msg["id"], []).append(msg)
        marks = dask_scheduler.task_metadata.get(finished, {})
        listed = []
        for name, dataset in list(published_datasets(dask_scheduler).items()):
            if not (isinstance(name, str) and name.startswith(prefix)) or not dataset["keys"]:
                continue
            key = dataset["keys"][0]
            task = dask_scheduler.tasks.get(key)
            processing_on = getattr(task, "processing_on", None)
            training_id = name[len(prefix) :]
            listed.append(
                {
                    "id": training_id,
                    "key": key,
                    "record": published_raw(dataset),
                    "events": events_by_id.get(training_id, []),
                    "task_state": task.state if task is not None else None,
                    "processing_on": processing_on.address if processing_on else None,
                    "finished_at": marks.get(key),
                    "gang": gang_facts(dask_scheduler, key),
                }
            )
        return listed

    return client.run_on_scheduler(gather)


def record_of(client: Client, listed: dict[str, Any]) -> dict[str, Any]:
    """A listed training's published record, with its future bound to ``client``.

    What ``Client.get_dataset`` does for one dataset, for a record the listing
    carried back in its frames.
    """
    return decode_published(listed["record"], client)


def forget_training(
    client: Client, training_id: str, key: str, for_all_clients: bool = False
) -> None:
    """Drop everything the scheduler keeps of the training: its dataset (if it still
    holds ``key``), finished marker, kept log and events; ``for_all_clients`` also
    cancels its task for every client holding it (they see it cancelled).

    A newer training may have been published under the same (external) id: its
    dataset, log and events stay.
    """
    dataset, metadata, store = dataset_name(training_id), FINISHED_METADATA, LOG_STORE
    runs = RUNS_METADATA
    topics = (STATE_TOPIC, LOG_TOPIC)
    client_id = client.id if for_all_clients else None

    def forget(dask_scheduler: Any) -> None:
        drop_published(dataset, key, dask_scheduler=dask_scheduler)
        dask_scheduler.task_metadata.get(metadata, {}).pop(key, None)  # metadata has no delete
        dask_scheduler.task_metadata.get(runs, {}).pop(key, None)
        if client_id is not None and key in dask_scheduler.tasks:
            cancel_for_all_clients(
                dask_scheduler, [key], client_id, f"training {training_id} deleted"
            )
        plugin = dask_scheduler.plugins.get(store)
        if plugin is not None and plugin.logs.get(training_id, (None,))[0] == key:
            del plugin.logs[training_id]
        if hasattr(plugin, "forget"):  # a store from an older caikit-dask has none
            plugin.forget(key)
        for name in topics:  # the broker's bounded deque of (time, msg) per topic
            kept = topic_events(dask_scheduler, name)
            if kept is not None:
                mine = [
                    event
                    for event in kept
                    if isinstance(event[1], dict)
                    and event[1].get("id") == training_id
                    and event[1].get("key") == key
                ]
                for event in mine:
                    kept.remove(event)

    client.run_on_scheduler(forget)
