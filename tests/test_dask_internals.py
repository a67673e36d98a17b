"""Each private or undocumented part of distributed we use, checked against the installed one.

One test per use in ``caikit_dask.dask_internals``: a distributed release that changes
one of them fails here, with a message naming it, before it fails a load or a training.
"""

from __future__ import annotations

import asyncio
import pickle

import distributed
import pytest
from cluster_support import poll
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol.pickle import dumps

from caikit_dask import dask_internals as internals


def changed(what: str) -> str:
    return (
        f"distributed {distributed.__version__} changed {what}: update "
        "caikit_dask/dask_internals.py for it"
    )


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, by: int) -> bytes:
        self.n += by
        return pickle.dumps(self.n)


@pytest.fixture(scope="module")
def client(local_cluster):
    with Client(local_cluster.scheduler_address, set_as_default=False) as client:
        yield client


@pytest.fixture
def counter(client):
    future = client.submit(Counter, actor=True, pure=False)
    with client.as_current():  # a handle binds to the current client when it is made
        actor = future.result(timeout=30)
    yield future, actor
    future.release()


def test_an_actor_handle_keeps_its_future_and_lets_it_go(client, counter):
    future, actor = counter
    assert hasattr(actor, "_future"), changed("Actor._future (the handle's actor task future)")
    kept = internals.detach_actor_future(actor)
    assert kept is not None and kept.key == future.key, changed("what Actor._future holds")
    assert actor._future is None
    with client.as_current():  # a handle without its future still calls the actor
        assert pickle.loads(actor.add(1).result(timeout=10)) == 1


def test_an_actor_handle_is_built_from_class_worker_and_key(client, counter):
    future, _ = counter
    [worker] = client.who_has([future])[future.key]
    with client.as_current():
        handle = internals.actor_handle(Counter, worker, future.key)
        assert pickle.loads(handle.add(2).result(timeout=10)) == 2, changed("Actor(cls, addr, key)")


@pytest.mark.parametrize("direct", [True, False])
def test_actor_execute_runs_a_method_and_names_a_missing_actor(local_cluster, direct):
    with Client(
        local_cluster.scheduler_address, set_as_default=False, direct_to_workers=direct
    ) as client:
        future = client.submit(Counter, actor=True, pure=False)
        future.result(timeout=30)
        [worker] = client.who_has([future])[future.key]
        rpc = internals.actor_rpc(client, worker)

        async def execute(key: str) -> bytes:
            return await internals.execute_on_actor(rpc, key, "add", 5)

        result = client.sync(execute, future.key)
        assert pickle.loads(result) == 5, changed("the worker's actor_execute handler")
        with pytest.raises(KeyError) as missing:
            client.sync(execute, "no-such-actor")
        assert missing.value.args == ("no-such-actor",), changed("actor_execute's missing actor")
        future.release()


def test_a_cluster_keeps_its_running_adaptive():
    with LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        assert internals.running_adaptive(cluster) is None
        adaptive = cluster.adapt(minimum=0, maximum=2)
        assert internals.running_adaptive(cluster) is adaptive, changed("Cluster._adaptive")
        assert adaptive.maximum == 2
        adaptive.stop()
        assert internals.running_adaptive(cluster) is None, changed("Adaptive.periodic_callback")


def test_a_client_can_desire_keys_it_bound(client, observer):
    future = observer.submit(lambda: 41 + 1, pure=False)
    assert future.result(timeout=30) == 42
    observer.publish_dataset(internals_check=future)
    try:
        other = distributed.Future(future.key, client)  # bound here, not yet desired
        internals.desire_keys(client, [future.key])
        assert other.result(timeout=10) == 42, changed("Client._send_to_scheduler / desires-keys")
    finally:
        observer.unpublish_dataset("internals_check")


def test_a_half_built_clients_loop_runner_stops():
    client = Client(
        processes=False, n_workers=0, dashboard_address="127.0.0.1:0", set_as_default=False
    )
    assert hasattr(client, "_loop_runner"), changed("Client._loop_runner")
    client.close()
    internals.stop_loop_runner(client)
    assert not client._loop_runner.is_started(), changed("LoopRunner.is_started / stop")


def test_a_published_dataset_is_read_raw_and_decoded_with_its_futures(client, observer):
    future = observer.submit(lambda: "value", pure=False)
    future.result(timeout=30)
    observer.publish_dataset(internals_raw={"future": future, "n": 3})
    try:

        def raw(dask_scheduler):
            datasets = internals.published_datasets(dask_scheduler)
            return internals.published_raw(datasets["internals_raw"])

        record = client.run_on_scheduler(raw)
        value = internals.decode_published(record, client)
        internals.desire_keys(client, [value["future"].key])
        assert value["n"] == 3, changed("PublishExtension.datasets or its Serialized framing")
        assert value["future"].result(timeout=10) == "value", changed("futures_of / bind_client")
    finally:
        observer.unpublish_dataset("internals_raw")


def test_dropping_a_published_dataset_leaves_no_client_entry(client):
    future = client.submit(lambda: 1, pure=False)
    future.result(timeout=30)
    client.publish_dataset(internals_drop=future)

    def drop_and_look(dask_scheduler):
        internals.drop_published("internals_drop", future.key, dask_scheduler=dask_scheduler)
        return (
            "internals_drop" in internals.published_datasets(dask_scheduler),
            "published-internals_drop" in dask_scheduler.clients,
        )

    assert client.run_on_scheduler(drop_and_look) == (False, False), changed(
        "the published-<name> pseudo-client of PublishExtension"
    )


def test_the_scheduler_keeps_topic_events_in_a_deque(client):
    client.log_event("caikit-dask-internals-check", {"n": 1})

    def kept(dask_scheduler):
        events = internals.topic_events(dask_scheduler, "caikit-dask-internals-check")
        return None if events is None else [msg for _, msg in events]

    assert client.run_on_scheduler(kept) == [{"n": 1}], changed("Scheduler._broker._topics")
    assert (
        client.run_on_scheduler(
            lambda dask_scheduler: internals.topic_events(dask_scheduler, "never-logged")
        )
        is None
    )


def test_a_wrapped_scheduler_method_answers_remote_callers_too():
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        scheduler = cluster.scheduler

        def plus_one(original):
            def adaptive_target(target_duration=None):
                return original(target_duration) + 100

            return adaptive_target

        before = scheduler.adaptive_target()
        internals.wrap_scheduler_method(scheduler, "adaptive_target", plus_one)
        internals.wrap_scheduler_method(scheduler, "adaptive_target", plus_one)  # once only
        remote = client.sync(client.scheduler.adaptive_target)
        assert remote == before + 100, changed("Scheduler.handlers (the comm handler map)")
        assert asyncio.iscoroutinefunction(scheduler.retire_workers), changed(
            "Scheduler.retire_workers (an async method)"
        )


def test_a_handler_added_on_the_scheduler_answers_a_worker(client):
    def add(dask_scheduler):
        async def echo(action, **kwargs):
            return {"action": action, **kwargs}

        internals.add_scheduler_handler(dask_scheduler, "caikit_dask_internals_echo", echo)

    async def call(dask_worker):
        return await dask_worker.scheduler.caikit_dask_internals_echo(action="ping", n=1)

    client.run_on_scheduler(add)
    try:
        answers = list(client.run(call).values())
        assert answers, "no worker answered"
        for answer in answers:
            assert answer == {"action": "ping", "n": 1}, changed("Scheduler.handlers (comm ops)")
    finally:
        client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.handlers.pop("caikit_dask_internals_echo")
        )


class MarkerPlugin(SchedulerPlugin):
    name = "caikit-dask-internals-marker"

    def __init__(self, mark: str) -> None:
        self.mark = mark


def test_a_worker_registers_a_pickled_scheduler_plugin_once(client):
    name = MarkerPlugin.name

    async def register(mark: str, dask_worker) -> None:
        pickled = dumps(MarkerPlugin(mark))
        await internals.register_scheduler_plugin_from_worker(dask_worker, pickled, name)

    [worker, *_] = client.scheduler_info(n_workers=-1)["workers"]
    try:
        client.run(register, "first", workers=[worker])
        client.run(register, "second", workers=[worker])  # idempotent: the first one stays
        mark = client.run_on_scheduler(
            lambda dask_scheduler: getattr(dask_scheduler.plugins.get(name), "mark", None)
        )
        assert mark == "first", changed("Scheduler.register_scheduler_plugin from a worker")
    finally:
        client.unregister_scheduler_plugin(name)


def test_a_worker_lists_the_actors_it_holds(client, counter):
    future, _ = counter
    [worker] = client.who_has([future])[future.key]
    held = client.run(
        lambda dask_worker: [type(a).__name__ for a in internals.worker_actors(dask_worker)],
        workers=[worker],
    )
    assert "Counter" in held[worker], changed("Worker.state.actors")


def test_a_client_is_subscribed_on_the_scheduler_at_once(client):
    topic, client_id = "caikit-dask-internals-subscribe", client.id

    def subscribe_and_look(dask_scheduler) -> bool:
        internals.subscribe_on_scheduler(dask_scheduler, topic, client_id)
        subscribed = client_id in dask_scheduler._broker._topics[topic].subscribers
        dask_scheduler.unsubscribe_topic(topic, client_id)
        return subscribed

    assert client.run_on_scheduler(subscribe_and_look), changed(
        "Scheduler.subscribe_topic(topic, client)"
    )


def test_a_task_is_cancelled_for_every_client_holding_it(client, observer):
    # A task no worker can run: it waits, holding no worker thread, until cancelled.
    future = client.submit(sum, [1, 2], resources={"NO-SUCH-RESOURCE": 1}, pure=False)
    key, client_id, holders = future.key, client.id, {client.id, observer.id}
    poll(lambda: client.run_on_scheduler(lambda dask_scheduler: key in dask_scheduler.tasks))
    held_elsewhere = distributed.Future(key, observer)
    internals.desire_keys(observer, [key])

    def held_by_both(dask_scheduler) -> bool:
        return {c.client_key for c in dask_scheduler.tasks[key].who_wants} >= holders

    poll(lambda: client.run_on_scheduler(held_by_both), what="both clients to hold the task")
    client.run_on_scheduler(
        lambda dask_scheduler: internals.cancel_for_all_clients(
            dask_scheduler, [key], client_id, "internals check"
        )
    )
    poll(
        lambda: future.status == held_elsewhere.status == "cancelled",
        10,
        what=changed("Scheduler.stimulus_cancel(keys, client, force, reason, msg)"),
    )


def test_routes_added_to_the_schedulers_http_server_answer():
    import requests
    from tornado import web

    class Hello(web.RequestHandler):
        def get(self):
            self.write("hello from a route")

    with LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        internals.add_http_routes(cluster.scheduler, [(r"/caikit-dask-probe", Hello)])
        base = f"http://127.0.0.1:{cluster.scheduler_info['services']['dashboard']}"
        answer = requests.get(f"{base}/caikit-dask-probe", timeout=10)
        assert answer.status_code == 200 and answer.text == "hello from a route", changed(
            "ServerNode.http_application (the scheduler's tornado application)"
        )
        assert requests.get(f"{base}/health", timeout=10).status_code == 200


def test_the_views_that_read_the_adaptive_target_are_where_we_look_for_them():
    import importlib
    from pathlib import Path

    for module in internals._VIEWS_READING_THE_TARGET:
        source = importlib.util.find_spec(module)
        assert source is not None, changed(f"the module {module}")
    prometheus = importlib.import_module("distributed.http.scheduler.prometheus.core")
    assert "adaptive_target()" in Path(prometheus.__file__).read_text(), changed(
        "the scheduler's Prometheus collector (no longer reads adaptive_target)"
    )


def test_a_worker_process_is_told_apart_from_a_caller(client):
    # Worker._instances / Scheduler._instances: the live servers of a process
    assert not internals.in_worker_process(), changed("Worker._instances (this process has none)")
    answers = client.run(internals.in_worker_process)
    assert answers and all(answers.values()), changed("Worker._instances (on a worker)")
    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        assert cluster.workers and not internals.in_worker_process(), changed(
            "Scheduler._instances (an in-process cluster's caller holds its scheduler)"
        )
