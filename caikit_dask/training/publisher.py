"""Publishing trainings' records off the caller's thread, many per scheduler call.

``Client.publish_dataset`` first waits for the client's batched stream to flush
(its interval is 10 ms) so that the scheduler knows the published future's key;
waiting for that in ``train()`` was most of its time. Here a short-lived thread
publishes whatever queued since its last call in one ``publish_dataset`` call,
so ``train()`` returns at once and 1,000 submissions cost a few flushes, not
1,000. Another process finds a training once its record is published.
Nothing outlives an embedded cluster: the records are dropped before it closes.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from concurrent.futures import Future
from typing import Any

from distributed import Client

from ..connection import DaskConnection
from ..errors import log
from ..per_client import PerClient
from .events import DATASET_PREFIX


class DatasetPublisher:
    """One client's queue of datasets to publish, drained by a thread while it is not empty."""

    @classmethod
    def for_client(cls, client: Client) -> DatasetPublisher:
        return _publishers.get(client)

    def _drop_with_cluster(self, cluster_closes: bool) -> None:
        """Drop the trainings' records quietly before their embedded cluster goes."""
        client = self._client()
        if not cluster_closes or client is None:
            return
        with contextlib.suppress(Exception):
            for name in client.list_datasets():
                if str(name).startswith(DATASET_PREFIX):
                    client.unpublish_dataset(name)

    def __init__(self, client: Client):
        self._client = weakref.ref(client)
        self._lock = threading.Lock()
        self._queued: dict[str, tuple[Any, Future]] = {}
        self._draining = False

    def publish(self, name: str, record: Any) -> Future:
        """Queue ``record`` under ``name`` (replacing any earlier one); done once published."""
        done: Future = Future()
        with self._lock:
            replaced = self._queued.pop(name, None)
            self._queued[name] = (record, done)
            start, self._draining = not self._draining, True
        if replaced is not None:
            replaced[1].set_result(None)  # superseded before it was sent
        if start:
            threading.Thread(target=self._drain, name="caikit-dask-publish", daemon=True).start()
        return done

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queued = self._queued, {}
                if not batch:
                    self._draining = False
                    return
            client = self._client()
            try:
                if client is None:
                    raise RuntimeError("the Dask client was closed before publishing")
                client.publish_dataset(override=True, **{n: r for n, (r, _) in batch.items()})
            except Exception as err:  # noqa: BLE001 - every waiter hears it
                log.warning(
                    "<DSK30000014W>",
                    "Could not publish %d training record(s) (%s); other processes will not "
                    "find them: %s",
                    len(batch),
                    ", ".join(batch),
                    err,
                )
                for _, done in batch.values():
                    done.set_exception(err)
                continue
            for _, done in batch.values():
                done.set_result(None)


def _start_publisher(client: Client) -> DatasetPublisher:
    publisher = DatasetPublisher(client)
    DaskConnection.on_close(client, publisher._drop_with_cluster)
    return publisher


_publishers: PerClient[DatasetPublisher] = PerClient(_start_publisher)
