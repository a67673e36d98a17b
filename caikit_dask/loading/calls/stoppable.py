"""The caller side of stoppable calls: a proxy call sent with an id ``cancel`` can name.

Prediction jobs use it; ordinary proxy calls take the coalesced channel (see
``wire.channel``) and carry no id. Routing, retries and ``call_timeout`` are the
ordinary calls' (see ``retrying``).
"""

from __future__ import annotations

from typing import Any

from ..replicas.replica import Replica
from ..replicas.replica_set import ReplicaSet
from ..wire.protocol import RUN_STOPPABLE, decode_outcome, encode_request, sendable_call
from .retrying import with_retry


def call_stoppable(
    replica_set: ReplicaSet, call_id: str, method: str, args: tuple, kwargs: dict
) -> Any:
    """``<method>(*args, **kwargs)`` on a replica, stoppable by the actor's ``cancel(call_id)``."""
    replica_set.raise_if_closed()
    args, kwargs = sendable_call(args, kwargs)
    request = encode_request(method, args, kwargs, replica_set.spec.max_payload_size)

    def send(replica: Replica) -> Any:
        return replica.remote(RUN_STOPPABLE, call_id, request)

    return decode_outcome(with_retry(replica_set, method, send))
