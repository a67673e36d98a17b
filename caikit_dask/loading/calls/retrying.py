"""Running one call on a model's replicas: routed, retried on replica death, bounded.

A call that failed because its replica died is retried on another replica
(inference calls are taken to be free of side effects); any other failure is
the caller's. Every call returns or raises within ``call_timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from distributed.comm.core import CommClosedError

from ...errors import log
from ...formatting import seconds
from ...metrics.model_calls import measured_call
from ..replicas.replica import Replica, ReplicaState
from ..replicas.replica_set import ReplicaSet
from ..upkeep.health import is_dead
from ..upkeep.repairs import replace
from ..wire.protocol import decode_outcome

# What a call to a replica that died (or was released) fails with.
TRANSPORT_ERRORS = (OSError, CommClosedError, RuntimeError)


@measured_call
def call(replica_set: ReplicaSet, method: str, request: bytes) -> Any:
    """Run a pickled request (see ``protocol``) on a replica: its result, or its exception."""
    outcome = with_retry(replica_set, method, lambda replica: replica.channel.submit(request))
    return decode_outcome(outcome)


def with_retry(
    replica_set: ReplicaSet, method: str, send: Callable[[Replica], Any], hold: bool = False
) -> Any:
    """``send`` to a replica and wait for its answer, on another replica if that one died.

    ``send`` returns something with ``result(timeout)``; so does a stream's opening.
    With ``hold`` the call stays counted on its replica after the answer (an open
    stream): it returns ``(answer, replica)`` and the caller ends it with ``done``.
    """
    deadline = time.monotonic() + replica_set.spec.call_timeout
    tried: set[int] = set()
    while True:
        replica = replica_set.acquire(deadline, tried)
        held, pending = False, None
        try:
            pending = send(replica)
            answer = wait_for_answer(replica_set, replica, pending, deadline)
            if hold:
                held = True
                return answer, replica
            return answer
        except TimeoutError:
            abandon(pending)
            raise TimeoutError(
                f"{replica_set.spec.module_id}.{method} did not return within call_timeout="
                f"{seconds(replica_set.spec.call_timeout)} (replica on {replica.worker})"
            ) from None
        except TRANSPORT_ERRORS as err:
            abandon(pending)  # e.g. its replica was replaced: a late answer is not read
            if not is_dead(replica_set, replica, err):
                raise
            tried.add(id(replica))
            if not replica_set.closed:
                log.warning(
                    "<DSK50000011W>",
                    "Replica of %s on %s died during %s; retrying on another replica",
                    replica_set.spec.module_id,
                    replica.worker,
                    method,
                )
                replace(replica_set, replica)
        finally:
            if not held:
                replica_set.done(replica)


_REPLACED = (ReplicaState.DEAD, ReplicaState.RELEASED)


def abandon(pending: Any) -> None:
    """A call given up on (``call_timeout``): a direct call stops waiting for its answer."""
    forget = getattr(pending, "abandon", None)
    if forget is not None:
        forget()


def wait_for_answer(
    replica_set: ReplicaSet, replica: Replica, pending: Any, deadline: float
) -> Any:
    """Wait for an actor call, giving up early if its replica or the scheduler is lost.

    A call to a dead worker can sit in distributed's connect retries for
    ``comm.timeouts.connect``; once the replica is replaced, retry elsewhere, and
    while the scheduler is unreachable, fail naming it.
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            return pending.result(timeout=min(remaining, 0.25))
        except TimeoutError:
            if replica.state in _REPLACED:  # a draining one finishes its calls
                raise CommClosedError(f"replica on {replica.worker} was replaced") from None
            replica_set.connection.raise_if_unreachable()
