"""Hearing what the scheduler announces about our actors: evictions and retirements.

Once per client (and again on a new scheduler, see ``PerScheduler``): the plugin
that holds retirements is registered and both topics are subscribed, before the
first placement on that client, so no notice about its actors is missed. The
notices are handed to their owners through the registry (``eviction``, ``leaving``).
If the scheduler cannot be set up, the models still serve; they just cannot be
evicted to make room nor moved off a retiring worker, which is logged once.
"""

from __future__ import annotations

import weakref
from typing import Any

from distributed import Client

from ...errors import log
from ...per_client import PerScheduler
from ...topics import subscribe
from ..scheduler.books import EVICTIONS, RETIRING
from ..scheduler.retiring import MoveModelsBeforeRetiring
from .eviction import on_evictions
from .leaving import MOVE_TIMEOUT, on_retiring


def _set_up(client: Client) -> bool:
    client.register_plugin(MoveModelsBeforeRetiring(MOVE_TIMEOUT))
    subscribe(client, EVICTIONS, _message_of(on_evictions))
    subscribe(client, RETIRING, _message_of(on_retiring))
    return True


def _message_of(handler: Any) -> Any:
    def handle(event: tuple[float, dict[str, Any]]) -> None:
        handler(event[1])

    return handle


_set_up_on: PerScheduler[bool] = PerScheduler(_set_up)
_warned: weakref.WeakSet[Client] = weakref.WeakSet()


def watch(client: Client) -> None:
    """Have this client's scheduler announce evictions and retirements to us."""
    try:
        _set_up_on.get(client)
    except Exception as err:  # noqa: BLE001 - the models still serve
        if client in _warned:
            return
        _warned.add(client)
        log.warning(
            "<DSK50000016W>",
            "Models on %s cannot be moved off retiring workers nor evicted for room: %s",
            client.scheduler.address if client.scheduler else client,
            err,
        )
