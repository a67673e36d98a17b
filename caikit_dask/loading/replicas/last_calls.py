"""When this process's models were last called, for least-recently-used eviction.

The call path only counts calls (``Replica.last_used``); which replicas were called
since the last look is turned into wall-clock stamps here, in batches: each health
check round, and with every placement request.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from .registry import served
from .replica import Replica

_lock = threading.Lock()
_stamped: weakref.WeakKeyDictionary[Replica, int] = weakref.WeakKeyDictionary()


def take(connection: Any) -> dict[str, float]:
    """``{actor key: now}`` for the replicas of ``connection`` called since the last take."""
    now = time.time()
    stamps = {}
    with _lock:
        for replica_set in served.served(connection):
            for replica in replica_set.routed():
                if replica.last_used != _stamped.get(replica, 0):
                    _stamped[replica] = replica.last_used
                    stamps[replica.key] = now
    return stamps
