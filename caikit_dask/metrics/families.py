"""The metrics this process exports, declared once, with the names operators rely on.

Counters and histograms live in prometheus_client's default registry (what caikit.runtime's
metrics server and ``prometheus_client.start_http_server`` serve). Gauges that describe
state are not here: ``served`` reads them at scrape time.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# From 100 us (a trivial call on a warm replica) to 60 s (the default call_timeout).
CALL_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# A model's load: a tiny model on a warm worker to a large one fetched and unpacked.
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

OUTCOMES = ("ok", "error", "overloaded", "timeout")
# Why a model's replicas were (re)loaded, as ``loads_total`` labels them.
LOAD_REASONS = ("load", "on_demand", "reload", "scale_up", "repair", "move")

calls = Counter(
    "caikit_dask_model_calls",
    "Calls to a model's task methods through its proxy, by outcome "
    "(ok, error: the model or the call path raised, overloaded: refused by "
    "max_queued_calls, timeout: no answer within call_timeout).",
    ("model", "method", "outcome"),
)
call_duration = Histogram(
    "caikit_dask_model_call_duration_seconds",
    "Time a call to a model's task method took in the caller, routing, retries and "
    "the answer included (a stream: until its last item).",
    ("model", "method"),
    buckets=CALL_BUCKETS,
)
loads = Counter(
    "caikit_dask_model_loads",
    "Replica placements that finished, by reason: load (the model's first), on_demand "
    "(lazy or scaled to zero), reload (after an eviction), scale_up, repair (a dead "
    "replica replaced), move (off a retiring worker).",
    ("model", "reason"),
)
load_failures = Counter(
    "caikit_dask_model_load_failures",
    "Replica placements that failed, by reason (as caikit_dask_model_loads).",
    ("model", "reason"),
)
load_duration = Histogram(
    "caikit_dask_model_load_duration_seconds",
    "Time from booking a worker to the replica taking calls, by reason.",
    ("model", "reason"),
    buckets=LOAD_BUCKETS,
)
evictions = Counter(
    "caikit_dask_model_evictions",
    "Replicas of this process's models the scheduler evicted to make room for another model.",
    ("model",),
)
moves = Counter(
    "caikit_dask_model_moves",
    "Replicas moved off a retiring worker (placed elsewhere first).",
    ("model",),
)
trainings_started = Counter(
    "caikit_dask_trainings_started",
    "Trainings submitted from this process.",
)
