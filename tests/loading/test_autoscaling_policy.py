"""The autoscaling decision as a table: (config, trend, sample, now) -> decision, trend."""

import pytest

from caikit_dask.config import AutoscalingConfig
from caikit_dask.loading.upkeep.autoscaling_policy import Sample, Trend, decide

CONFIG = AutoscalingConfig(
    min_replicas=1,
    max_replicas=3,
    target_ongoing_requests=2,
    upscale_delay=1.0,
    downscale_delay=5.0,
)
TO_ZERO = AutoscalingConfig(
    min_replicas=0, max_replicas=2, target_ongoing_requests=2, upscale_delay=1, downscale_delay=5
)


@pytest.mark.parametrize(
    "config, trend, sample, now, replicas, next_trend",
    [
        # above target: the trend starts, then holds for upscale_delay -> one more
        (CONFIG, Trend(), Sample(5, 5, 1), 10.0, None, Trend(10.0, None)),
        (CONFIG, Trend(10.0), Sample(5, 5, 1), 10.5, None, Trend(10.0, None)),
        (CONFIG, Trend(10.0), Sample(5, 5, 1), 11.0, 2, Trend(None, None)),
        # a dip under the target breaks the trend
        (CONFIG, Trend(10.0), Sample(2, 5, 1), 11.0, None, Trend(None, None)),
        # at max_replicas: never more
        (CONFIG, Trend(10.0), Sample(30, 5, 3), 20.0, None, Trend(None, None)),
        # would stay within target with one fewer, for downscale_delay -> one fewer
        (CONFIG, Trend(None, 10.0), Sample(2, 5, 2), 14.9, None, Trend(None, 10.0)),
        (CONFIG, Trend(None, 10.0), Sample(2, 5, 2), 15.0, 1, Trend(None, None)),
        (CONFIG, Trend(None, 10.0), Sample(3, 5, 2), 15.0, None, Trend(None, None)),
        # at min_replicas: never fewer
        (CONFIG, Trend(None, 0.0), Sample(0, 0, 1), 100.0, None, Trend(None, None)),
        # to zero: only once no call started nor is in flight
        (TO_ZERO, Trend(None, 0.0), Sample(0, 1, 1), 100.0, None, Trend(None, None)),
        (TO_ZERO, Trend(None, 0.0), Sample(0, 0, 1), 100.0, 0, Trend(None, None)),
        # scaled to zero (or not loaded): nothing to decide, trends reset
        (TO_ZERO, Trend(3.0, 4.0), Sample(0, 9, 0), 100.0, None, Trend(None, None)),
        # growing wins the sample and leaves the shrinking trend as it was
        (CONFIG, Trend(1.0, 2.0), Sample(9, 9, 2), 100.0, 3, Trend(None, 2.0)),
    ],
)
def test_decide(config, trend, sample, now, replicas, next_trend):
    decision, after = decide(config, trend, sample, now)
    assert (decision.replicas if decision else None) == replicas
    assert after == next_trend
    if decision:
        assert decision.average == sample.in_flight / sample.replicas
