"""One replica: an actor holding the model, its channel, and the state it is in.

The state is named (as Ray Serve names its replicas' states) rather than spread
over flags, and only ``ReplicaSet`` moves it:

    STARTING --add--> ROUTED --leave_routing--> DRAINING --last call done--> RELEASED
        |                  \\--leave_routing(DEAD)--> DEAD --released--> RELEASED
        \\--leave_routing(DEAD) (its worker left while it loaded)--> DEAD

UNRESPONSIVE (a frozen worker, see ``upkeep.health``) leaves routing as DEAD does.
"""

from __future__ import annotations

import enum
from typing import Any

from distributed.comm.core import CommClosedError

from ..wire.channel import ActorChannel
from ..wire.direct_channel import DirectChannel, open_channel


class ReplicaState(enum.Enum):
    STARTING = "starting"  # its actor is being placed and loaded
    ROUTED = "routed"  # takes calls
    DRAINING = "draining"  # out of routing, finishing its calls in flight
    DEAD = "dead"  # out of routing, found dead: its calls in flight retry elsewhere
    RELEASED = "released"  # its actor handle is dropped; the worker frees the model


class LeaveReason(enum.Enum):
    """Why a replica leaves routing; each says what happens to it and to the model."""

    DEAD = "dead"  # its worker left, or its actor can't be reached
    # its worker is listed but its actor has not answered a ping for health_check_timeout
    UNRESPONSIVE = "unresponsive"
    EVICTED = "evicted"  # the scheduler unloaded it to make room for another model
    SCALED_DOWN = "scaled down"  # the autoscaler needs one replica fewer
    MOVED = "moved"  # its worker retires: a replacement was placed elsewhere first

    @property
    def drains(self) -> bool:
        """Whether its calls in flight finish on it (else they retry elsewhere)."""
        return not self.dead

    @property
    def dead(self) -> bool:
        """Whether it leaves for good: its worker is not used again (until it answers)."""
        return self in (LeaveReason.DEAD, LeaveReason.UNRESPONSIVE)

    @property
    def unloads_if_last(self) -> bool:
        """Whether a model left without replicas loads on its next call (else it is
        re-placed in the background)."""
        return self in (LeaveReason.EVICTED, LeaveReason.SCALED_DOWN)


class Replica:
    """One actor, the channel its calls take, and what routing needs to know about it."""

    def __init__(self, worker: str, key: str):
        self.worker, self.key = worker, key
        self.state = ReplicaState.STARTING
        self.future: Any = None  # ours: the only one holding the actor alive
        self.actor: Any = None
        self.channel: ActorChannel | DirectChannel | None = None
        self.outstanding = 0  # calls sent and not yet answered
        self.last_used = 0  # when it was last chosen, as the set's call count
        self.size = 0  # bytes its load measured on the worker (0: not measured)

    def started(
        self, client: Any, future: Any, actor: Any, direct: bool = False, timeout: float = 10.0
    ) -> Replica:
        """Its actor is loaded: the future that keeps it, and the channel calls take
        (``direct``: the direct path when the worker's listener answers, see
        ``wire.direct_channel``; else Dask's actor RPC)."""
        self.future, self.actor = future, actor
        channel = ActorChannel(client, self.worker, self.key)
        self.channel = open_channel(client, actor, channel, timeout) if direct else channel
        return self

    @property
    def direct(self) -> bool:
        """Whether its calls take the direct path."""
        return isinstance(self.channel, DirectChannel)

    def remote(self, method: str, *args: Any) -> Any:
        """The actor's ``method(*args)`` (streams, stoppable calls): something with
        ``result(timeout)``, over the replica's channel."""
        channel = self.channel
        if isinstance(channel, DirectChannel):
            return channel.call(method, *args)
        return getattr(self.handle(), method)(*args)

    @property
    def alive(self) -> bool:
        """Routed to (what routing asks)."""
        return self.state is ReplicaState.ROUTED

    def handle(self) -> Any:
        """The actor handle, or CommClosedError once released (a call then retries)."""
        actor = self.actor  # once: a concurrent release sets it to None
        if actor is None:
            raise CommClosedError(f"replica on {self.worker} was released")
        return actor

    def release(self) -> None:
        """Drop our future, the only one holding the actor, and fail what its channel holds."""
        if self.state is ReplicaState.RELEASED:
            return
        self.state = ReplicaState.RELEASED
        self.actor = None
        if self.channel is not None:
            self.channel.close()
        if self.future is not None:
            self.future.release()
