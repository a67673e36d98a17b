"""Backpressure: past ``max_queued_calls``, a call to a model is refused at once.

A replica runs up to ``MAX_CONCURRENCY`` calls at once (its actor's thread pool);
the calls it holds beyond that wait in the actor. The model's *queued* calls are
its outstanding calls (sent and not answered, plus those waiting for a live
replica) minus what its live replicas run at once. A new call that would take the
queue past ``max_queued_calls`` fails with ``ModelOverloaded`` instead of waiting:
like Ray Serve's ``max_queued_requests`` over ``max_ongoing_requests``, counted by
each caller process for its own calls.
"""

from __future__ import annotations

import threading
import time

from ...errors import ModelOverloaded, log
from ..wire.protocol import MAX_CONCURRENCY

LOG_EVERY = 10.0  # seconds between warnings about one model's refused calls


def queued(outstanding: int, live_replicas: int) -> int:
    """Calls beyond what ``live_replicas`` run at once (zero or more)."""
    return max(0, outstanding - live_replicas * MAX_CONCURRENCY)


def queued_capacity(live_replicas: int, limit: int) -> int:
    """How many calls may be outstanding before the next is refused."""
    return live_replicas * MAX_CONCURRENCY + limit


class QueueLimit:
    """One model's ``max_queued_calls``: admits a new call or refuses it.

    Refusals are logged once per ``LOG_EVERY`` with their count, not once per call.
    """

    def __init__(self, module_id: str, limit: int):
        self.module_id, self.limit = module_id, limit
        self._lock = threading.Lock()
        self._count = 0
        self._logged_at = -LOG_EVERY

    def admit(self, outstanding: int, live_replicas: int) -> None:
        """Raise ``ModelOverloaded`` if one more call would queue past the limit."""
        if outstanding >= queued_capacity(live_replicas, self.limit):
            raise self._refusal(outstanding, live_replicas)

    def _refusal(self, outstanding: int, live_replicas: int) -> ModelOverloaded:
        at_once = live_replicas * MAX_CONCURRENCY
        message = (
            f"Model {self.module_id} is overloaded: {outstanding} calls outstanding, its "
            f"{live_replicas} live replica(s) run {at_once} at once, and "
            f"{queued(outstanding, live_replicas)} are queued, which is max_queued_calls="
            f"{self.limit}. Add replicas, raise max_queued_calls, or send calls more slowly "
            "(retry after a moment)."
        )
        self._log(message)
        return ModelOverloaded(message)

    def _log(self, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._count += 1
            if now - self._logged_at < LOG_EVERY:
                return
            count, self._count, self._logged_at = self._count, 0, now
        log.warning("<DSK50000015W>", "%s (%d call(s) refused since last logged)", message, count)
