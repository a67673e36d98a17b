"""How calls travel to a replica: shared messages, no waiting behind slow calls, clear failures."""

import pickle
import threading
import time

import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll, run_in_threads
from dask_testlib import save_fault_model

from caikit_dask import DaskModelInitializer
from caikit_dask.errors import DaskBackendError
from caikit_dask.loading.proxy import replica_set_of
from caikit_dask.loading.wire.direct_channel import DirectChannel
from caikit_dask.loading.wire.protocol import decode_outcome, encode_request


@pytest.fixture
def model(connection, tmp_path):
    path = save_fault_model(str(tmp_path / "fault"))
    loaded = DaskModelInitializer({"connection": connection}, "call-path").init(
        ModuleConfig.load(path)
    )
    yield loaded
    loaded.close()


def test_concurrent_calls_share_messages(model):
    channel = replica_set_of(model).replicas[0].channel
    before = channel.messages
    outcomes = run_in_threads(lambda _: [model.run("x") for _ in range(50)], 16)
    assert all(isinstance(value, list) and len(value) == 50 for value, _ in outcomes)
    messages = channel.messages - before
    if isinstance(channel, DirectChannel):  # one frame per call; answers share reads
        assert messages < 16 * 50, f"{messages} reads for 800 answers: none shared"
    else:
        assert messages <= 16 * 50 / 2, f"{messages} messages for 800 calls: no coalescing"


def test_a_fast_call_is_not_held_behind_a_slow_one(model):
    """Neither by a slow call already running nor by one that left in the same message."""
    slow = threading.Thread(target=model.run, args=("sleep:4",))
    slow.start()
    poll(lambda: model.replicas[0]["outstanding"] == 1, 5, what="the slow call in flight")
    started = time.monotonic()
    model.run("fast")
    assert time.monotonic() - started < 2, "a fast call waited for the slow call in flight"

    outcomes = run_in_threads(lambda i: model.run("sleep:4" if i == 0 else "fast"), 6)
    fast = [seconds for _, seconds in outcomes[1:]]
    assert max(fast) < 2, f"fast calls sent with a slow one waited for it: {fast}"
    assert outcomes[0][1] >= 4
    slow.join(10)


def test_calls_queued_behind_a_slow_call_in_one_message_are_taken_by_other_threads(model):
    """The actor runs fast calls of one message on one thread, until one of them runs long."""
    for _ in range(30):  # the actor learns that calls are fast
        model.run("warm")
    actor = replica_set_of(model).replicas[0].actor
    requests = [encode_request("run", ("sleep:3",), {}, None)]
    requests += [encode_request("run", (f"fast {i}",), {}, None) for i in range(3)]
    started = time.monotonic()
    tickets, outcomes = pickle.loads(actor.run_batch(requests).result(timeout=10))
    assert time.monotonic() - started < 1
    assert outcomes[0] is None, "the slow call cannot be done yet"
    assert all(outcome is not None for outcome in outcomes[1:]), "fast calls waited"
    [slow] = pickle.loads(actor.collect(tickets[:1]).result(timeout=10))
    assert decode_outcome(slow).label


def test_closing_fails_calls_in_flight_at_once(model):
    caller = threading.Thread(target=lambda: outcome.append(_capture(model.run, "sleep:20")))
    outcome: list = []
    caller.start()
    poll(lambda: model.replicas[0]["outstanding"] == 1, 5, what="the call in flight")
    started = time.monotonic()
    model.close()
    caller.join(10)
    assert time.monotonic() - started < 5
    assert isinstance(outcome[0], DaskBackendError) and "closed" in str(outcome[0])


def _capture(function, *args):
    try:
        return function(*args)
    except Exception as err:  # noqa: BLE001 - returned to the test
        return err


def test_unpicklable_argument_is_named_at_the_call(model):
    with pytest.raises(TypeError, match=r"Argument #0 of run \(lock\) cannot be sent"):
        model.run(threading.Lock())
    assert model.run("still fine").label


def test_large_requests_travel_as_their_own_frame(model):
    assert model.run("x" * 1_000_000).label


def test_calls_go_through_the_scheduler_without_direct_to_workers(local_cluster, tmp_path):
    """Where workers are not reachable from the caller, calls are relayed by the scheduler."""
    path = save_fault_model(str(tmp_path / "fault"))
    connection = {"address": local_cluster.scheduler_address, "direct_to_workers": False}
    model = DaskModelInitializer({"connection": connection}, "relayed").init(
        ModuleConfig.load(path)
    )
    try:
        assert type(replica_set_of(model).replicas[0].channel._rpc).__name__ == "ProxyRPC"
        assert model.run("relayed").label
        with pytest.raises(KeyError, match="boom"):
            model.run("raise:boom")
    finally:
        model.close()


def test_a_call_on_the_clients_event_loop_is_refused_not_deadlocked(model):
    outcome: list = []
    replica_set_of(model).client.loop.add_callback(lambda: outcome.append(_capture(model.run, "x")))
    poll(lambda: outcome, 5, what="the call on the event loop to return")
    assert isinstance(outcome[0], RuntimeError) and "event loop" in str(outcome[0])
    assert model.run("from a thread").label
