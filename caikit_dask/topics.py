"""Subscribing to a scheduler event topic so that no event sent afterwards is missed.

``Client.subscribe_topic`` only queues the subscription on the client's batched
stream, so an event the scheduler logs a few milliseconds later (a retirement
another client asked for on its own connection) can reach the scheduler first and
be sent to nobody. Here the scheduler also adds the subscriber in one round trip:
once ``subscribe`` returns, every later event of the topic reaches the handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed import Client

from .dask_internals import subscribe_on_scheduler


def subscribe(client: Client, topic: str, handler: Callable[[Any], Any]) -> None:
    """Call ``handler`` for each event of ``topic``, from the moment this returns."""
    client.subscribe_topic(topic, handler)
    client_id = client.id

    def add_subscriber(dask_scheduler: Any) -> None:
        subscribe_on_scheduler(dask_scheduler, topic, client_id)

    client.run_on_scheduler(add_subscriber)
