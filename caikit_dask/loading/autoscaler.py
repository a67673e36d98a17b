"""Replicas that follow the load: one sampling thread per autoscaled model.

Every sample reads the set's two counters (calls in flight, calls started), so a
call does no work for it. A replica is added once the average calls in flight
per replica stayed above ``target_ongoing_requests`` for ``upscale_delay``; one
is removed once the load would still stay at or under the target without it for
``downscale_delay`` (at zero: no call started nor in flight). That keeps the two
rules from undoing each other. A removed replica leaves routing at once and is
released when its last call in flight ended. Each decision is logged once, with
the numbers behind it.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass

from ..config import AutoscalingConfig
from ..errors import log
from ..formatting import seconds
from . import upkeep
from .placement import release_placements
from .replicas import ReplicaSet

_MIN_SAMPLE_PERIOD = 0.05


@dataclass
class _Trend:
    """Since when the load has asked for more (or fewer) replicas, without a break."""

    since: float | None = None

    def held(self, asking: bool, now: float, delay: float) -> bool:
        if not asking:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= delay


class Autoscaler:
    """Keeps one model's replica count in [min_replicas, max_replicas] as its load moves."""

    def __init__(self, replica_set: ReplicaSet, config: AutoscalingConfig):
        self._set = weakref.ref(replica_set)
        self.config = config
        self.period = max(
            _MIN_SAMPLE_PERIOD,
            min(
                replica_set.spec.health_check_period,
                config.upscale_delay / 4,
                config.downscale_delay / 4,
            ),
        )
        self._up, self._down = _Trend(), _Trend()
        self._calls_seen = 0

    @classmethod
    def watch(cls, replica_set: ReplicaSet, config: AutoscalingConfig) -> Autoscaler:
        autoscaler = cls(replica_set, config)
        threading.Thread(target=autoscaler._run, name="caikit-dask-autoscaler", daemon=True).start()
        return autoscaler

    def _run(self) -> None:
        while not upkeep.exiting.wait(self.period):
            replica_set = self._set()
            if replica_set is None or replica_set.closed:
                return
            try:
                self.sample(replica_set, time.monotonic())
            except Exception as err:  # noqa: BLE001 - the next sample tries again
                log.warning(
                    "<DSK50000024W>", "Autoscaling %s failed: %s", replica_set.spec.module_id, err
                )
            del replica_set

    def sample(self, replica_set: ReplicaSet, now: float) -> None:
        """One look at the load; at most one decision."""
        config = self.config
        in_flight, calls = replica_set.load()
        started, self._calls_seen = calls - self._calls_seen, calls
        replicas = len(replica_set.replicas)
        if replicas == 0:  # scaled to zero or not loaded yet: the next call loads it
            self._up.since = self._down.since = None
            return
        target = config.target_ongoing_requests
        average = in_flight / replicas
        fewer = (
            in_flight == 0 and started == 0
            if replicas == 1
            else in_flight <= target * (replicas - 1)
        )
        if self._up.held(
            average > target and replicas < config.max_replicas, now, config.upscale_delay
        ):
            self._up.since = None
            self._scale_up(replica_set, average, in_flight, replicas)
        elif self._down.held(fewer and replicas > config.min_replicas, now, config.downscale_delay):
            self._down.since = None
            self._scale_down(replica_set, average, in_flight, replicas)

    def _scale_up(
        self, replica_set: ReplicaSet, average: float, in_flight: int, replicas: int
    ) -> None:
        config, spec = self.config, replica_set.spec
        log.info(
            "<DSK50000022I>",
            "Scaling %s up to %d replicas: %.1f calls in flight per replica (%d on %d) "
            "above target_ongoing_requests=%s for upscale_delay=%s (max_replicas=%d)",
            spec.module_id,
            replicas + 1,
            average,
            in_flight,
            replicas,
            config.target_ongoing_requests,
            seconds(config.upscale_delay),
            config.max_replicas,
        )
        reason = upkeep.grow(replica_set)  # count follows: a health check would repair it
        if reason is None:
            replica_set.count = replicas + 1
        else:
            log.warning(
                "<DSK50000025W>",
                "Could not add a replica of %s: %s; staying at %d",
                spec.module_id,
                reason,
                replicas,
            )

    def _scale_down(
        self, replica_set: ReplicaSet, average: float, in_flight: int, replicas: int
    ) -> None:
        config, spec = self.config, replica_set.spec
        live = replica_set.live()
        if not live:
            return
        leaving = min(live, key=lambda r: r.outstanding)
        log.info(
            "<DSK50000023I>",
            "Scaling %s down to %d replicas: %.1f calls in flight per replica (%d on %d) "
            "would stay within target_ongoing_requests=%s for downscale_delay=%s "
            "(min_replicas=%d); %s leaves after its %d calls in flight",
            spec.module_id,
            replicas - 1,
            average,
            in_flight,
            replicas,
            config.target_ongoing_requests,
            seconds(config.downscale_delay),
            config.min_replicas,
            leaving.worker,
            leaving.outstanding,
        )
        replica_set.count = replicas - 1
        idle = replica_set.retire(leaving)
        client = replica_set.connection.open_client
        if client is not None and client.status == "running":
            release_placements(client, [(leaving.worker, leaving.future.key)])
        if idle:
            leaving.release()
