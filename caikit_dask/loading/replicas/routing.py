"""Which replica takes the next call: the routing policy, apart from the transport.

A pure function over plain data (as Ray Serve keeps its request router apart
from its replicas), so it is tested without a cluster and the replica set only
does the bookkeeping around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class ReplicaLoad(Protocol):
    """What routing knows of a replica (``Replica`` has these attributes)."""

    alive: bool
    outstanding: int  # calls sent and not yet answered
    last_used: int  # when it was last chosen, as an increasing call count


class Load(NamedTuple):
    """A plain ``ReplicaLoad``."""

    alive: bool
    outstanding: int
    last_used: int


def choose_replica(loads: Sequence[ReplicaLoad], tried: Sequence[int] = ()) -> int | None:
    """The index of the replica for the next call, or None when no replica is alive.

    Fewest outstanding calls; ties go to the least recently used. Replicas at the
    indices in ``tried`` (already tried by this call) only when no other is alive.
    """
    live = [index for index, load in enumerate(loads) if load.alive]
    if tried:
        live = [index for index in live if index not in tried] or live
    if not live:
        return None
    if len(live) == 1:
        return live[0]
    return min(live, key=lambda index: (loads[index].outstanding, loads[index].last_used))
