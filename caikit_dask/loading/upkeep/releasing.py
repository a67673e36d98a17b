"""Releasing what left routing: the actors, and their bookings on the scheduler.

The one place replicas are let go. Placements are released only over a connected
client: a closed connection is not reopened for it, and a scheduler that lost us
is not waited for.
"""

from __future__ import annotations

import contextlib

from ..placement.booking import release_placements
from ..replicas.replica import Replica
from ..replicas.replica_set import ReplicaSet


def release(replica_set: ReplicaSet, replicas: list[Replica], actors: bool = True) -> None:
    """Drop the bookings of replicas out of routing, and (``actors``) their actors now.

    Without ``actors`` a draining replica keeps its actor until its last call in flight
    is done (the set releases it then).
    """
    client = replica_set.connection.open_client
    if client is not None and client.status == "running":
        release_placements(client, [(r.worker, r.key) for r in replicas])
    if actors:
        for replica in replicas:
            with contextlib.suppress(Exception):  # the client may be closing
                replica.release()


def close(replica_set: ReplicaSet) -> None:
    """Release every actor and its placement; the workers drop the model.

    Also called again after a placement that ran while the model closed.
    """
    release(replica_set, replica_set.close())
