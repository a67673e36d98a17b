"""When to add or remove a replica: a pure function of (config, trend, sample, now).

As Ray Serve keeps its autoscaling policy apart from the code that acts on it: this
decides, ``autoscaler`` samples and acts. A replica is added once the average calls
in flight per replica stayed above ``target_ongoing_requests`` for ``upscale_delay``;
one is removed once the load would still stay at or under the target without it for
``downscale_delay`` (the last one, when ``min_replicas`` is 0: once no call started
nor was in flight). That keeps the two rules from undoing each other.
"""

from __future__ import annotations

from typing import NamedTuple

from ...config import AutoscalingConfig


class Sample(NamedTuple):
    """One look at a model's load."""

    in_flight: int  # calls sent and not answered
    started: int  # calls started since the previous sample
    replicas: int  # routed replicas


class Trend(NamedTuple):
    """Since when the load has asked for more (or fewer) replicas, without a break."""

    up_since: float | None = None
    down_since: float | None = None


class Decision(NamedTuple):
    """Scale to ``replicas`` (one more or one fewer), with the numbers behind it."""

    replicas: int
    average: float  # calls in flight per replica
    sample: Sample


def decide(
    config: AutoscalingConfig, trend: Trend, sample: Sample, now: float
) -> tuple[Decision | None, Trend]:
    """At most one decision for this sample, and the trend to carry to the next."""
    replicas, in_flight = sample.replicas, sample.in_flight
    if replicas == 0:  # scaled to zero or not loaded yet: the next call loads it
        return None, Trend()
    target = config.target_ongoing_requests
    average = in_flight / replicas
    asking_up = average > target and replicas < config.max_replicas
    up_since, up_held = _held(trend.up_since, asking_up, now, config.upscale_delay)
    if up_held:
        return Decision(replicas + 1, average, sample), Trend(None, trend.down_since)
    fewer = (
        in_flight == 0 and sample.started == 0
        if replicas == 1
        else in_flight <= target * (replicas - 1)
    )
    asking_down = fewer and replicas > config.min_replicas
    down_since, down_held = _held(trend.down_since, asking_down, now, config.downscale_delay)
    if down_held:
        return Decision(replicas - 1, average, sample), Trend(up_since, None)
    return None, Trend(up_since, down_since)


def _held(since: float | None, asking: bool, now: float, delay: float) -> tuple[float | None, bool]:
    """The trend's start, and whether it has held for ``delay``."""
    if not asking:
        return None, False
    since = now if since is None else since
    return since, now - since >= delay
