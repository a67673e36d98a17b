"""The caller side of stoppable calls: a proxy call sent with an id ``cancel`` can name.

Prediction jobs use it; ordinary proxy calls take the coalesced channel (see
``channel``) and carry no id. Routing, retries and ``call_timeout`` are the
ordinary calls' (see ``calls``).
"""

from __future__ import annotations

from typing import Any

from distributed.comm.core import CommClosedError

from .calls import with_retry
from .proxy import DaskModelProxy, _sendable
from .replicas import Replica
from .requests import decode_outcome, encode_request


def call_stoppable(
    proxy: DaskModelProxy, call_id: str, method: str, args: tuple, kwargs: dict
) -> Any:
    """``proxy.<method>(*args, **kwargs)``, stoppable by ``ModelActor.cancel(call_id)``."""
    replicas = proxy._replicas
    replicas.raise_if_closed()
    args = tuple(_sendable(value) for value in args)
    kwargs = {name: _sendable(value) for name, value in kwargs.items()}
    request = encode_request(method, args, kwargs, replicas.spec.max_payload_size)

    def send(replica: Replica) -> Any:
        actor = replica.actor  # once: a concurrent replacement sets it to None
        if actor is None:
            raise CommClosedError("replica released")
        return actor.run_stoppable(call_id, request)

    return decode_outcome(with_retry(replicas, method, send))
