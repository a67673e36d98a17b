"""One replica's calls over the direct path, and choosing it at load (``direct_calls``).

The same interface as ``channel.ActorChannel`` (``submit(request)`` gives something
with ``result(timeout)`` yielding outcome bytes), plus ``call`` for the actor's other
methods (stoppable calls, streams), so the call, retry, batch and stream code is the
same on both paths. The outcome bytes are the actor's own: results, module
exceptions and failures cross exactly as over Dask.

With ``direct_calls: auto`` a replica takes this path when its worker's listener can
be reached (right scheme, TLS as the cluster's, the port open); otherwise it keeps the
actor RPC and one warning per worker says why. A request over the frame limit takes
the actor RPC too.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

from distributed.comm.core import CommClosedError

from ...errors import log
from . import framing
from .channel import ActorChannel, PendingCall
from .direct_connection import DirectCall, DirectConnection, connection_to
from .protocol import CALL_ADDRESS, CLOSE_STREAM, NEXT_CHUNK, OPEN_STREAM, RUN_STOPPABLE

_KINDS = {
    RUN_STOPPABLE: framing.RUN_STOPPABLE,
    OPEN_STREAM: framing.OPEN_STREAM,
    NEXT_CHUNK: framing.NEXT_CHUNK,
    CLOSE_STREAM: framing.CLOSE_STREAM,
}
_warned: set[str] = set()
_warned_lock = threading.Lock()


class DirectChannel:
    """A replica's calls over its worker process's shared direct connection."""

    def __init__(
        self,
        address: str,
        token: bytes,
        fallback: ActorChannel,
        ssl_context: Any,
        tls_key: tuple,
        timeout: float,
    ):
        self.address, self.token, self.fallback = address, token, fallback
        self.worker = fallback.worker
        self._ssl_context, self._tls_key, self._timeout = ssl_context, tls_key, timeout
        self._closed = False
        self._connection: DirectConnection | None = None

    @property
    def messages(self) -> int:
        """Reads of answers on its connection (shared with other replicas there): fewer than
        the calls when concurrent callers share them."""
        connection = self._connection
        return 0 if connection is None else connection.reads

    def submit(self, request: bytes) -> Any:
        """Send a pickled request now; the pending call's result is its outcome bytes."""
        if len(request) + framing.TOKEN_SIZE > framing.MAX_FRAME:
            return self.fallback.submit(request)
        return self._send(framing.RUN, request)

    def call(self, method: str, *args: Any) -> Any:
        """One of the actor's other methods (``protocol`` names); its outcome bytes to come."""
        return self._send(_KINDS[method], pickle.dumps(args[0] if len(args) == 1 else args))

    def _send(self, kind: int, payload: bytes) -> Any:
        self.fallback.refuse_on_the_loop()
        if self._closed:
            return _failed(CommClosedError(f"actor on {self.worker} was released"))
        try:
            connection = connection_to(
                self.address, self._ssl_context, self._tls_key, self._timeout
            )
        except OSError as err:  # the retry logic asks whether the worker died
            return _failed(CommClosedError(f"cannot reach {self.address}: {err}"))
        self._connection = connection
        return connection.request(kind, self.token, payload)

    def close(self) -> None:
        """No new calls; those in flight notice the replica's state (see ``retrying``)."""
        self._closed = True
        self.fallback.close()


def _failed(err: BaseException) -> PendingCall:
    pending = PendingCall()
    pending.settle(error=err)
    return pending


def open_channel(client: Any, actor: Any, fallback: ActorChannel, timeout: float) -> Any:
    """The replica's direct channel if its worker's listener answers, else ``fallback``.

    Not where the client relays through the scheduler (``direct_to_workers: false``):
    its workers are taken to be out of reach; nor for workers in this process.
    """
    if not client.direct_to_workers or fallback.worker.startswith("inproc://"):
        return fallback  # workers out of reach, or in this very process
    try:
        where = getattr(actor, CALL_ADDRESS)().result(timeout=timeout)
    except Exception as err:  # noqa: BLE001 - an actor from an older version, or gone
        return _fall_back(fallback, f"its actor did not say where it listens ({err!r})")
    address = where.get("address")
    if address is None:
        return _fall_back(fallback, f"its worker has no call listener: {where.get('why')}")
    connection_args = client.security.get_connection_args("client")
    ssl_context = connection_args.get("ssl_context")
    if address.startswith("tcp://") and (
        connection_args.get("require_encryption") or ssl_context is not None
    ):
        return _fall_back(fallback, f"{address} is plain TCP and the cluster requires TLS")
    if address.startswith("tls://") and ssl_context is None:
        return _fall_back(fallback, f"{address} requires TLS and this client has no TLS config")
    # A connection is the listener's (a reused port is another listener), per TLS identity.
    tls = tuple(sorted(client.security.get_tls_config_for_role("client").items()))
    tls_key = (where.get("listener"), tls)
    try:
        connection_to(address, ssl_context, tls_key, timeout)
    except OSError as err:  # includes ssl.SSLError
        return _fall_back(fallback, f"cannot connect to {address}: {err}")
    return DirectChannel(address, where["token"], fallback, ssl_context, tls_key, timeout)


def _fall_back(fallback: ActorChannel, why: str) -> ActorChannel:
    with _warned_lock:
        first = fallback.worker not in _warned
        _warned.add(fallback.worker)
    if first:
        log.warning(
            "<DSK50000033W>",
            "Calls to models on %s take Dask's actor RPC, not the direct path: %s "
            "(direct_calls: off silences this)",
            fallback.worker,
            why,
        )
    return fallback


__all__ = ["DirectCall", "DirectChannel", "open_channel"]
