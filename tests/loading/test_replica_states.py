"""A replica's named states and the one transition out of routing, without a cluster.

The set is given a connection that is never opened: admission, routing and membership
make no Dask call, which is what lets them be checked here on their own.
"""

import threading
import time

import pytest

from caikit_dask.connection import DaskConnection
from caikit_dask.loading.placement.source import ModelSource
from caikit_dask.loading.replicas.replica import LeaveReason, Replica, ReplicaState
from caikit_dask.loading.replicas.replica_set import ReplicaSet
from caikit_dask.loading.replicas.spec import ReplicaSpec


def replica_set(count=2, lazy=False, load_on_demand=None):
    spec = ReplicaSpec(
        module_id="m",
        source=ModelSource("/nowhere"),
        library=None,
        count=count,
        resources={},
        call_timeout=1.0,
        health_check_period=1.0,
        max_payload_size=None,
        lazy=lazy,
    )
    connection = DaskConnection.from_config({"address": "tcp://127.0.0.1:1"})
    return ReplicaSet(connection, spec, load_on_demand)


def routed(rs, *workers):
    replicas = [Replica(worker, f"key-{worker}") for worker in workers]
    rs.add(replicas)
    return replicas


def test_a_started_replica_is_routed_and_a_dead_one_never_again():
    rs = replica_set()
    a, b = routed(rs, "w1", "w2")
    assert a.state is ReplicaState.ROUTED and rs.routed() == [a, b]
    assert rs.leave_routing(a, LeaveReason.DEAD)
    assert a.state is ReplicaState.DEAD
    assert rs.routed() == [b] and rs.lost_workers == {"w1"}
    assert not rs.leave_routing(a, LeaveReason.DEAD)  # once only
    assert rs.wanted == 2  # a repair places it again


def test_a_starting_replica_whose_worker_left_marks_the_worker_lost():
    rs = replica_set()
    starting = Replica("w3", "key-w3")
    assert rs.leave_routing(starting, LeaveReason.DEAD)
    assert starting.state is ReplicaState.DEAD and rs.lost_workers == {"w3"}
    assert not rs.leave_routing(Replica("w4", "k"), LeaveReason.MOVED)  # never routed


@pytest.mark.parametrize(
    "reason", [LeaveReason.MOVED, LeaveReason.SCALED_DOWN, LeaveReason.EVICTED]
)
def test_a_leaving_replica_drains_its_calls_then_is_released(reason):
    rs = replica_set()
    a, b = routed(rs, "w1", "w2")
    in_flight = rs.acquire(time.monotonic() + 1, set())
    assert in_flight is a  # fewest outstanding, least recently used
    assert rs.leave_routing(a, reason)
    assert a.state is ReplicaState.DRAINING  # its call finishes on it
    assert rs.acquire(time.monotonic() + 1, set()) is b  # new calls go elsewhere
    rs.done(a)
    assert a.state is ReplicaState.RELEASED
    assert rs.lost_workers == frozenset()


def test_an_idle_leaving_replica_is_released_at_once():
    rs = replica_set()
    a, _ = routed(rs, "w1", "w2")
    rs.leave_routing(a, LeaveReason.MOVED)
    assert a.state is ReplicaState.RELEASED


def test_the_last_evicted_replica_leaves_the_model_to_load_on_its_next_call():
    rs = replica_set(count=1)
    [a] = routed(rs, "w1")
    rs.leave_routing(a, LeaveReason.EVICTED)
    assert rs.on_demand.needed and rs.on_demand.evictions == 1
    assert rs.wanted == 0  # not repaired: it loads on demand
    assert [r["state"] for r in rs.describe()] == ["evicted"]


def test_the_last_moved_replica_is_repaired_not_loaded_on_demand():
    rs = replica_set(count=1)
    [a] = routed(rs, "w1")
    rs.leave_routing(a, LeaveReason.MOVED)
    assert not rs.on_demand.needed and rs.wanted == 1


def test_scale_to_changes_what_is_kept_and_described():
    rs = replica_set(count=2)
    routed(rs, "w1")
    rs.scale_to(1)
    assert rs.count == 1 and rs.wanted == 1
    assert [r["state"] for r in rs.describe()] == ["resident"]


def test_close_ends_routing_and_wakes_the_waiting_calls():
    rs = replica_set(count=1)
    failures = []

    def wait_for_a_replica():
        try:
            rs.acquire(time.monotonic() + 10, set())
        except Exception as err:  # noqa: BLE001 - the test reads it
            failures.append(err)

    waiter = threading.Thread(target=wait_for_a_replica)
    waiter.start()
    [a] = routed(rs, "w1")
    rs.done(a)  # the waiter got it; give it back
    waiter.join(5)
    assert rs.close() == [a]
    with pytest.raises(Exception, match="was closed"):
        rs.acquire(time.monotonic() + 1, set())
    assert not failures
