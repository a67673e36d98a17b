"""Client-side listener that turns scheduler events into training state.

One monitor per client subscribes to the training topics and to the scheduler's
worker-removal events, so status changes reach ``get_info``/``wait`` as they
happen, without polling; the subscriptions end when a connection closes the client.

It knows the trainings it routes to only as ``TrainingListener`` (defined here):
``handle.DaskTraining`` is one (``submit`` registers it with ``follow``); the monitor
never imports the handle, the handle imports the monitor.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import weakref
from typing import Any, Protocol

from distributed import Client

from ..connection import DaskConnection
from ..per_client import PerClient
from . import events

log = logging.getLogger("caikit_dask.training")


class TrainingListener(Protocol):
    """What the monitor routes one training's events to (``handle.DaskTraining``).

    Both methods are called on the client's event loop: they must not block.
    """

    id: str  # the training id its events carry
    key: str  # its task key, named in the scheduler's worker-removal events

    def apply_event(self, msg: dict[str, Any]) -> None:
        """A state event about this training (from its worker or another client)."""

    def on_worker_lost(self, worker: str | None) -> None:
        """The worker running this training's task left the cluster."""


class TrainingMonitor:
    """Routes events for the trainings this process follows to their listeners.

    Listeners are held weakly: a handle nobody holds any more stops being followed.
    """

    def __init__(self, client: Client):
        self._client_ref = weakref.ref(client)
        self._trainings: weakref.WeakValueDictionary[str, TrainingListener] = (
            weakref.WeakValueDictionary()
        )
        # Events that arrive between submit and follow(), kept for the training.
        self._early: dict[str, list[dict[str, Any]]] = {}
        self._early_lock = threading.Lock()
        # Readers following a training's log (``DaskTraining.logs(follow=True)``).
        self._listeners: dict[str, list[queue.Queue]] = {}
        client.subscribe_topic(events.STATE_TOPIC, self._on_state)
        client.subscribe_topic(events.LOG_TOPIC, self._on_log)
        client.subscribe_topic("all", self._on_cluster_event)

    @classmethod
    def for_client(cls, client: Client) -> TrainingMonitor:
        return _monitors.get(client)

    def _unsubscribe(self, cluster_closes: bool) -> None:
        client = self._client_ref()
        if client is None:
            return
        for topic in events.SUBSCRIBED_TOPICS:
            with contextlib.suppress(ValueError):  # never subscribed
                client.unsubscribe_topic(topic)

    def expect(self, training_id: str) -> None:
        """Call before submitting: events for this id are kept until ``follow``."""
        with self._early_lock:
            self._early[training_id] = []

    def follow(self, training: TrainingListener) -> None:
        """Route ``training.id``'s events to ``training`` from now on (replacing any other),
        first those kept since ``expect``."""
        with self._early_lock:
            self._trainings[training.id] = training
            early = self._early.pop(training.id, [])
        for msg in early:
            training.apply_event(msg)

    def forget(self, training_id: str) -> None:
        self._trainings.pop(training_id, None)

    def followed(self, training_id: str) -> TrainingListener | None:
        """The listener this process follows ``training_id`` with, if any."""
        return self._trainings.get(training_id)

    def listen(self, training_id: str, messages: queue.Queue) -> None:
        """Put every state and log event of ``training_id`` into ``messages`` from now on."""
        with self._early_lock:
            self._listeners.setdefault(training_id, []).append(messages)

    def unlisten(self, training_id: str, messages: queue.Queue) -> None:
        with self._early_lock:
            listeners = self._listeners.get(training_id, [])
            with contextlib.suppress(ValueError):
                listeners.remove(messages)
            if not listeners:
                self._listeners.pop(training_id, None)

    def _tell_listeners(self, msg: dict[str, Any]) -> None:
        for messages in tuple(self._listeners.get(msg.get("id"), ())):
            messages.put(msg)

    # -- handlers (run on the client's event loop: never block here) -----------------------

    def _on_state(self, event: tuple[float, dict[str, Any]]) -> None:
        _, msg = event
        training_id = msg.get("id")
        self._tell_listeners(msg)
        with self._early_lock:
            training = self._trainings.get(training_id)
            if training is None and training_id in self._early:
                self._early[training_id].append(msg)
                return
        if training is not None:
            training.apply_event(msg)

    def _on_log(self, event: tuple[float, dict[str, Any]]) -> None:
        _, msg = event
        self._tell_listeners(msg)
        if msg.get("id") not in self._trainings:
            return
        rank = f" rank {msg['rank']}" if "rank" in msg else ""
        logging.getLogger(msg.get("name") or "caikit_dask.training").log(
            msg.get("level", logging.INFO),
            "[training %s%s on %s] %s",
            msg.get("id"),
            rank,
            msg.get("worker"),
            msg.get("msg"),
        )

    def _on_cluster_event(self, event: tuple[float, dict[str, Any]]) -> None:
        _, msg = event
        if msg.get("action") != "remove-worker":
            return
        lost = set(msg.get("processing-tasks") or ())
        for training in list(self._trainings.values()):
            if training.key in lost:
                training.on_worker_lost(msg.get("worker"))


def _start_monitor(client: Client) -> TrainingMonitor:
    monitor = TrainingMonitor(client)
    DaskConnection.on_close(client, monitor._unsubscribe)
    return monitor


_monitors: PerClient[TrainingMonitor] = PerClient(_start_monitor)
