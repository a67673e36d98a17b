"""Output streams: opened on a replica like a call, then pulled in growing chunks.

The stream stays on the worker; only the opening is retried on another replica
(a half-read stream cannot be resumed elsewhere). An open stream counts as an
outstanding call of its replica until it ends or is closed: its chunks take the
replica's threads, so routing and ``max_queued_calls`` see it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...errors import log
from ...metrics.model_calls import measured_stream
from ..replicas.replica import Replica
from ..replicas.replica_set import ReplicaSet
from ..wire.protocol import CLOSE_STREAM, NEXT_CHUNK, OPEN_STREAM, decode_outcome
from .retrying import with_retry

_FIRST_CHUNK, _LARGEST_CHUNK = 8, 256


@measured_stream
def stream(replica_set: ReplicaSet, method: str, request: bytes) -> Iterator[Any]:
    """The items of a streaming call, pulled lazily from the replica that opened it."""

    def open_stream(replica: Replica) -> Any:
        return replica.remote(OPEN_STREAM, request, 1)

    opened, replica = with_retry(replica_set, method, open_stream, hold=True)
    done = True
    size = _FIRST_CHUNK
    try:
        stream_id, items, done = decode_outcome(opened)  # the module's exception raises here
        yield from items
        while not done:
            items, done = decode_outcome(
                replica.remote(NEXT_CHUNK, stream_id, size).result(
                    timeout=replica_set.spec.call_timeout
                )
            )
            size = min(size * 2, _LARGEST_CHUNK)
            yield from items
    finally:
        if not done:
            try:
                replica.remote(CLOSE_STREAM, stream_id)
            except Exception as err:  # noqa: BLE001 - the replica may be gone
                log.debug("Could not close stream %s: %s", stream_id, err)
        replica_set.done(replica)
