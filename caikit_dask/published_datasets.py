"""On the scheduler: dropping the dataset a training or a prediction job published.

Unpublishing leaves distributed's ``published-<name>`` client entry behind, one per
dataset, so a scheduler serving many trainings and jobs would grow by one entry
each. ``drop_published`` removes both, and only while the dataset still holds the
run's task key (a newer run may have been published under the same name since).

Registered to travel by value: the scheduler runs it without caikit-dask installed.
"""

from __future__ import annotations

import sys
from typing import Any

import cloudpickle


def drop_published(dataset: str, key: str, *, dask_scheduler: Any) -> None:
    """Forget ``dataset`` (if it still holds ``key``) and its client entry, in one step."""
    publish = dask_scheduler.extensions.get("publish")
    record = publish.datasets.get(dataset) if publish is not None else None
    if record is not None and key in record["keys"]:
        del publish.datasets[dataset]
        dask_scheduler.client_releases_keys(record["keys"], f"published-{dataset}")
    entry = dask_scheduler.clients.get(f"published-{dataset}")
    if entry is not None and not entry.wants_what:
        del dask_scheduler.clients[f"published-{dataset}"]


cloudpickle.register_pickle_by_value(sys.modules[__name__])
