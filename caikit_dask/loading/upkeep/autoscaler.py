"""Replicas that follow the load: one loop samples every autoscaled model and acts.

Each sample reads the set's counters (calls in flight, calls started), so a call does
no work for it; the decision is ``autoscaling_policy.decide``'s. Adding a replica
(placing it takes a while) runs in a thread of its own, and the model is not
sampled again until it is done; a removed replica leaves routing at once and is
released when its last call in flight ended. Each decision is logged once, with the
numbers behind it.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field

from ...config import AutoscalingConfig
from ...errors import log
from ...formatting import seconds
from ..replicas.replica import LeaveReason
from ..replicas.replica_set import ReplicaSet
from .autoscaling_policy import Decision, Sample, Trend, decide
from .exiting import exiting
from .lifecycle import grow
from .releasing import release

_MIN_SAMPLE_PERIOD = 0.05


@dataclass
class _Scaled:
    """One autoscaled model: its config and what the loop keeps between samples."""

    config: AutoscalingConfig
    period: float
    trend: Trend = field(default_factory=Trend)
    calls_seen: int = 0
    next_due: float = 0.0
    acting: bool = False  # a decision is being carried out


_lock = threading.Lock()
_models: weakref.WeakKeyDictionary[ReplicaSet, _Scaled] = weakref.WeakKeyDictionary()
_thread: threading.Thread | None = None


def sample_period(replica_set: ReplicaSet, config: AutoscalingConfig) -> float:
    """How often a model is sampled: often enough for its delays and health checks."""
    return max(
        _MIN_SAMPLE_PERIOD,
        min(
            replica_set.spec.health_check_period,
            config.upscale_delay / 4,
            config.downscale_delay / 4,
        ),
    )


def watch(replica_set: ReplicaSet, config: AutoscalingConfig) -> None:
    """Keep ``replica_set`` in [min_replicas, max_replicas] as its load moves."""
    global _thread
    with _lock:
        _models[replica_set] = _Scaled(config, sample_period(replica_set, config))
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="caikit-dask-autoscaler", daemon=True)
            _thread.start()


def _run() -> None:
    while True:
        with _lock:
            models = [(s, m) for s, m in _models.items() if not s.closed]
        period = min((m.period for _, m in models), default=_MIN_SAMPLE_PERIOD)
        if exiting.wait(period):
            return
        now = time.monotonic()
        for replica_set, scaled in models:
            if scaled.acting or scaled.next_due > now:
                continue
            scaled.next_due = now + scaled.period
            try:
                _sample(replica_set, scaled, now)
            except Exception as err:  # noqa: BLE001 - the next sample tries again
                log.warning(
                    "<DSK50000024W>", "Autoscaling %s failed: %s", replica_set.spec.module_id, err
                )
        del models


def _sample(replica_set: ReplicaSet, scaled: _Scaled, now: float) -> None:
    in_flight, calls, replicas = replica_set.sample()
    started, scaled.calls_seen = calls - scaled.calls_seen, calls
    decision, scaled.trend = decide(
        scaled.config, scaled.trend, Sample(in_flight, started, replicas), now
    )
    if decision is None:
        return
    if decision.replicas > replicas:
        scaled.acting = True
        threading.Thread(
            target=_scale_up,
            args=(replica_set, scaled, decision),
            name="caikit-dask-scale-up",
            daemon=True,
        ).start()
    else:
        _scale_down(replica_set, scaled.config, decision)


def _scale_up(replica_set: ReplicaSet, scaled: _Scaled, decision: Decision) -> None:
    config, spec, sample = scaled.config, replica_set.spec, decision.sample
    try:
        log.info(
            "<DSK50000022I>",
            "Scaling %s up to %d replicas: %.1f calls in flight per replica (%d on %d) "
            "above target_ongoing_requests=%s for upscale_delay=%s (max_replicas=%d)",
            spec.module_id,
            decision.replicas,
            decision.average,
            sample.in_flight,
            sample.replicas,
            config.target_ongoing_requests,
            seconds(config.upscale_delay),
            config.max_replicas,
        )
        reason = grow(replica_set)  # count follows: a health check would repair it
        if reason is None:
            replica_set.scale_to(decision.replicas)
        else:
            log.warning(
                "<DSK50000025W>",
                "Could not add a replica of %s: %s; staying at %d",
                spec.module_id,
                reason,
                sample.replicas,
            )
    except Exception as err:  # noqa: BLE001 - the next sample tries again
        log.warning("<DSK50000024W>", "Autoscaling %s failed: %s", spec.module_id, err)
    finally:
        scaled.acting = False


def _scale_down(replica_set: ReplicaSet, config: AutoscalingConfig, decision: Decision) -> None:
    spec, sample = replica_set.spec, decision.sample
    routed = replica_set.routed()
    if not routed:
        return
    leaving = min(routed, key=lambda r: r.outstanding)
    log.info(
        "<DSK50000023I>",
        "Scaling %s down to %d replicas: %.1f calls in flight per replica (%d on %d) "
        "would stay within target_ongoing_requests=%s for downscale_delay=%s "
        "(min_replicas=%d); %s leaves after its %d calls in flight",
        spec.module_id,
        decision.replicas,
        decision.average,
        sample.in_flight,
        sample.replicas,
        config.target_ongoing_requests,
        seconds(config.downscale_delay),
        config.min_replicas,
        leaving.worker,
        leaving.outstanding,
    )
    replica_set.scale_to(decision.replicas)
    if replica_set.leave_routing(leaving, LeaveReason.SCALED_DOWN):
        release(replica_set, [leaving], actors=False)  # its actor goes after its last call
