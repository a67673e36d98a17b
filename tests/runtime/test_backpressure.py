"""Backpressure: past ``max_queued_calls`` a call fails at once as "overloaded".

A replica runs 4 calls at once; a model with ``replicas: R`` and ``max_queued_calls: N``
takes ``4R + N`` outstanding calls and refuses the next ones at once. Real processes: a
``dask scheduler`` and two ``dask worker`` subprocesses that import ``tiny_runtime_lib``
(whose ``SlowGreeter`` sleeps in each call), the proxy in this process, and a real
``caikit.runtime`` for gRPC (RESOURCE_EXHAUSTED) and HTTP (503).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import grpc
import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import ProcessCluster, poll, process_cluster, run_in_threads
from runtime_server import HERE, RuntimeServer

from caikit_dask import DaskModelInitializer
from caikit_dask.errors import DaskBackendError, ModelOverloaded
from caikit_dask.loading.proxy import replica_set_of

pytestmark = pytest.mark.slow

SERVICE = "caikit.runtime.TinyRuntimeLib.TinyRuntimeLibService"
SLOW_CALL = 3.0  # seconds each admitted call takes: the refused ones must fail well before
AT_ONCE = 1.0  # a refused call fails within this
REFUSED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterable[ProcessCluster]:
    """Scheduler + workers ``a`` and ``b``; both can import tiny_runtime_lib."""
    workers = {"a": {}, "b": {}}
    with process_cluster(tmp_path_factory.mktemp("dask"), workers, [HERE]) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory) -> str:
    from tiny_runtime_lib import SlowGreeter

    path = str(tmp_path_factory.mktemp("models") / "slow")
    SlowGreeter().save(path)
    return path


def load(cluster: ProcessCluster, path: str, **settings):
    config = {"connection": {"address": cluster.address, "timeout": "20s"}, **settings}
    return DaskModelInitializer(config, "backpressure").init(ModuleConfig.load(path))


def outstanding(model) -> int:
    return sum(replica["outstanding"] for replica in model.replicas)


def assert_overloaded(err: BaseException, limit: int) -> None:
    assert isinstance(err, ModelOverloaded), repr(err)
    assert isinstance(err, DaskBackendError)
    message = str(err)
    assert "overloaded" in message and f"max_queued_calls={limit}" in message, message
    assert "Add replicas" in message and "raise max_queued_calls" in message, message


# -- the proxy ------------------------------------------------------------------------------


def test_calls_past_the_queue_fail_at_once_and_the_rest_succeed(cluster, slow_model_dir):
    """2 replicas x 4 + max_queued_calls 2 = 10 calls taken; of 13 at once, 3 fail at once."""
    model = load(cluster, slow_model_dir, replicas=2, max_queued_calls=2)
    try:
        outcomes = run_in_threads(lambda i: model.run(f"caller {i}", seconds=SLOW_CALL), 13)
        assert all(outcome is not None for outcome in outcomes), "a call hung"
        refused = [(err, took) for err, took in outcomes if isinstance(err, Exception)]
        served = [(reply, took) for reply, took in outcomes if not isinstance(reply, Exception)]
        assert len(refused) == 3, [repr(err) for err, _ in refused]
        assert len(served) == 10
        for err, took in refused:
            assert_overloaded(err, 2)
            assert took < AT_ONCE, f"a refused call took {took:.2f}s"
            assert "10 calls outstanding" in str(err), err  # the refused ones do not count
        assert all(reply.text.startswith("Hello, caller") for reply, _ in served)
        assert len(model.replicas) == 2

        assert outstanding(model) == 0  # every admitted call was counted out
        assert model.run("again").text == "Hello, again!"
    finally:
        model.close()


def test_max_queued_calls_zero_takes_what_the_replicas_run_at_once(cluster, slow_model_dir):
    model = load(cluster, slow_model_dir, replicas=1, max_queued_calls=0)
    try:
        outcomes = run_in_threads(lambda i: model.run(f"caller {i}", seconds=SLOW_CALL), 5)
        refused = [err for err, _ in outcomes if isinstance(err, Exception)]
        assert len(refused) == 1
        assert_overloaded(refused[0], 0)
    finally:
        model.close()


def test_an_open_stream_counts_until_it_ends(cluster, slow_model_dir):
    """Streams that sent their first item and are still running hold their places."""
    model = load(cluster, slow_model_dir, replicas=1, max_queued_calls=1)
    try:
        streams = [iter(model.run_stream(f"stream {i}", seconds=SLOW_CALL)) for i in range(5)]
        firsts = [next(stream).text for stream in streams]  # all 5 open, on the same replica
        assert firsts == [f"Hello, stream {i}!" for i in range(5)]
        started = time.monotonic()
        with pytest.raises(ModelOverloaded) as refused:
            model.run("one more")
        assert time.monotonic() - started < AT_ONCE
        assert_overloaded(refused.value, 1)
        with pytest.raises(ModelOverloaded):
            next(iter(model.run_stream("and a stream")))

        assert [next(stream).text for stream in streams[:2]] == ["Bye, stream 0!", "Bye, stream 1!"]
        for stream in streams[:2]:  # read to the end: their places are free again
            assert list(stream) == []
        streams[2].close()  # a stream closed early frees its place too
        assert model.run("now").text == "Hello, now!"
        del streams
        poll(lambda: outstanding(model) == 0, 10, what="the streams counted out")
    finally:
        model.close()


def test_a_closed_model_says_closed_not_overloaded(cluster, slow_model_dir):
    model = load(cluster, slow_model_dir, max_queued_calls=0)
    model.close()
    with pytest.raises(DaskBackendError, match="was closed") as raised:
        replica_set_of(model).acquire(time.monotonic() + 1, set())  # past the proxy's own check
    assert not isinstance(raised.value, ModelOverloaded)


def test_unlimited_by_default(cluster, slow_model_dir):
    model = load(cluster, slow_model_dir)
    try:
        outcomes = run_in_threads(lambda i: model.run(f"caller {i}", seconds=1), 12)
        assert all(not isinstance(value, Exception) for value, _ in outcomes), outcomes
    finally:
        model.close()


# -- through caikit.runtime ------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(cluster, slow_model_dir, caikit_runtime_module_factory) -> RuntimeServer:
    """caikit.runtime serving ``slow`` with the DASK initializer: 1 replica, 1 queued call."""
    connection = {"address": cluster.address, "timeout": "20s"}
    initializer = {
        "type": "DASK",
        "import_class": "caikit_dask.DaskModelInitializer",  # tiny_runtime_lib does not import it
        "config": {"connection": connection, "replicas": 1, "max_queued_calls": 1},
    }
    return caikit_runtime_module_factory(
        config={"model_management": {"initializers": {"default": initializer}}},
        models={"slow": slow_model_dir},
    )


def actor_calls(cluster: ProcessCluster) -> int:
    """Calls the workers' model actors have received so far."""

    def probe(dask_worker):  # a closure, so cloudpickle ships it by value
        from caikit_dask.loading.actor.model_actor import ModelActor

        actors = list(dask_worker.state.actors.values())
        return sum(actor.calls for actor in actors if isinstance(actor, ModelActor))

    return sum(cluster.client.run(probe).values())


def grpc_code(call) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


def test_overload_is_resource_exhausted_over_grpc_and_503_over_http(runtime, cluster):
    """With the model's 5 places taken, every kind of call is refused at once."""
    before = actor_calls(cluster)
    busy = [
        threading.Thread(target=lambda: results.append(_slow_call(runtime)), daemon=True)
        for _ in range(5)
    ]
    results: list = []
    for thread in busy:
        thread.start()
    poll(lambda: actor_calls(cluster) - before >= 5, 20, what="5 calls on the actor")

    started = time.monotonic()
    code, details = grpc_code(
        lambda: runtime.grpc_call(
            f"{SERVICE}/SlowGreetingTaskPredict", {"name": "g"}, model_id="slow"
        )
    )
    assert code == REFUSED, (code, details)
    assert "overloaded" in details and "max_queued_calls=1" in details, details

    code, details = grpc_code(
        lambda: runtime.grpc_stream(
            f"{SERVICE}/ServerStreamingSlowGreetingTaskPredict", {"name": "s"}, model_id="slow"
        )
    )
    assert code == REFUSED, (code, details)
    assert "overloaded" in details, details

    response = runtime.http_predict("slow-greeting", "slow", "h")
    assert response.status_code == 503, response.text
    assert "overloaded" in response.json()["details"], response.text
    assert "max_queued_calls=1" in response.json()["details"], response.text

    events = runtime.http_stream("slow-greeting", "slow", "e")
    assert [event for event, _ in events] == ["error"], events
    assert events[0][1]["code"] == 503 and "overloaded" in events[0][1]["details"], events
    assert time.monotonic() - started < 4 * AT_ONCE + 2, "the refusals were not at once"

    for thread in busy:
        thread.join(30)
    assert results == [200] * 5, results
    assert runtime.http_predict("slow-greeting", "slow", "later").status_code == 200


def test_a_burst_over_grpc_and_http_refuses_exactly_the_overflow(runtime):
    """8 concurrent requests for 5 places (4 running + 1 queued): 3 refused, 5 answered."""

    def call(index: int):
        if index % 2:
            return _slow_call(runtime)
        return grpc_code(
            lambda: runtime.grpc_call(
                f"{SERVICE}/SlowGreetingTaskPredict",
                {"name": f"g{index}", "seconds": SLOW_CALL},
                model_id="slow",
            )
        )[0]

    outcomes = run_in_threads(call, 8)
    assert all(outcome is not None for outcome in outcomes), "a request hung"
    answered = [took for code, took in outcomes if code in (200, grpc.StatusCode.OK)]
    refused = [took for code, took in outcomes if code in (503, REFUSED)]
    assert (len(answered), len(refused)) == (5, 3), outcomes
    assert max(refused) < AT_ONCE + 1, outcomes  # + the runtime's own overhead


def _slow_call(runtime: RuntimeServer) -> int:
    return runtime.http_predict("slow-greeting", "slow", "busy", {"seconds": SLOW_CALL}).status_code
