"""Every use of distributed's private or undocumented parts, in one place.

distributed promises nothing about these; each is wrapped here with a comment
saying what it is and why we need it, and ``tests/test_dask_internals.py`` checks
each one against the installed distributed, so a release that changes one fails
there, naming it, instead of somewhere deep in a load or a training.

Parts of this run on workers (plugin registration, actors) and on the scheduler
(topic events and subscriptions, published datasets, cancels, handler wrapping),
so the module travels by value: it imports only distributed and the standard
library, and the scheduler needs no caikit-dask.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import cloudpickle

# -- actors (caller side) ----------------------------------------------------------------


def detach_actor_future(actor: Any) -> Any:
    """Drop the future an ``Actor`` handle keeps of its actor task; returns it (or None).

    ``Actor._future``: when the actor's worker dies, a call on the handle awaits this
    future (the actor task, pinned to the dead worker, never reruns) and hangs. We
    hold the actor's lifetime with a future of our own, so the handle's goes.
    """
    future = getattr(actor, "_future", None)
    if future is not None:
        actor._future = None
    return future


def actor_handle(actor_class: type, worker: str, key: str) -> Any:
    """An ``Actor`` handle built here, as the worker would send it back.

    ``Actor(cls, address, key)``: the constructor distributed itself uses when it
    unpickles a handle; building it saves fetching the actor task's result.
    """
    from distributed.actor import Actor

    return Actor(actor_class, worker, key)


def actor_rpc(client: Any, worker: str) -> Any:
    """An rpc to ``worker``'s handlers: direct, or through the scheduler.

    ``Client.rpc`` (the client's connection pool) and ``distributed.actor.ProxyRPC``
    (the scheduler's ``proxy`` handler, for clients that cannot reach workers) are
    what ``Actor`` handles use inside distributed.
    """
    if client.direct_to_workers:
        return client.rpc(worker)
    from distributed.actor import ProxyRPC

    return ProxyRPC(client.scheduler, worker)


async def execute_on_actor(rpc: Any, key: str, function: str, argument: Any) -> Any:
    """Call ``function(argument)`` on the actor ``key`` through the worker's handler.

    The worker's ``actor_execute`` handler and its reply ``{"status": "OK", "result"}``
    or ``{"status": "error", "exception"}`` are what ``Actor`` calls send; a key the
    worker no longer holds raises ``KeyError(key)``; through the scheduler's proxy that
    arrives as ``Exception("KeyError('<key>')")``, turned back into the KeyError here.
    """
    try:
        response = await rpc.actor_execute(actor=key, function=function, args=[argument], kwargs={})
    except KeyError:
        raise
    except Exception as err:
        if type(err) is Exception and err.args == (repr(KeyError(key)),):
            raise KeyError(key) from None
        raise
    if response["status"] != "OK":
        raise response["exception"]
    return response["result"]


# -- clusters and clients ----------------------------------------------------------------


def running_adaptive(cluster: Any) -> Any:
    """The cluster object's running ``Adaptive``, or None.

    ``Cluster._adaptive`` is where ``cluster.adapt()`` keeps it; its
    ``periodic_callback`` is None once stopped.
    """
    adaptive = getattr(cluster, "_adaptive", None)
    if adaptive is None or getattr(adaptive, "periodic_callback", None) is None:
        return None
    return adaptive


def desire_keys(client: Any, keys: list[str]) -> None:
    """Have the scheduler report these keys' states to ``client`` (futures bound here).

    ``Client._send_to_scheduler`` with the ``client-desires-keys`` op is what
    ``get_dataset`` sends after binding a dataset's futures.
    """
    client._send_to_scheduler({"op": "client-desires-keys", "keys": list(keys)})


def stop_loop_runner(client: Any) -> None:
    """Stop the event-loop thread of a Client whose constructor raised.

    ``Client._loop_runner``: its thread would otherwise outlive the half-built client
    and block the next client started on the same thread.
    """
    runner = getattr(client, "_loop_runner", None)
    if runner is not None and runner.is_started():
        runner.stop()


def decode_published(record: tuple[str, Any, Any], client: Any) -> Any:
    """A published dataset's value, read raw on the scheduler (``published_raw``), with
    its futures bound to ``client``: what ``Client.get_dataset`` does for one dataset.

    ``merge_and_deserialize`` / ``decompress`` undo the comm layer's framing, and
    ``futures_of`` + ``Future.bind_client`` attach the futures, as distributed does.
    """
    from distributed.client import futures_of
    from distributed.protocol.compression import decompress
    from distributed.protocol.serialize import merge_and_deserialize

    kind, header, frames = record
    if kind == "frames":
        if "compression" in header:
            frames = decompress(header, frames)
        value = merge_and_deserialize(header, frames)
    else:
        value = header
    for future in futures_of(value):
        future.bind_client(client)
    return value


# -- on workers ---------------------------------------------------------------------------


def register_scheduler_plugin_from_worker(worker: Any, pickled_plugin: bytes, name: str) -> Any:
    """Register a pickled scheduler plugin from inside a task (idempotent); a coroutine.

    ``Scheduler.register_scheduler_plugin(plugin, name, idempotent)``, the handler behind
    ``Client.register_plugin``, called over the worker's rpc to the scheduler
    (``Worker.scheduler``): a worker has no API of its own for it, and a task that opened
    a client for it would cost a connection per worker. The plugin travels as bytes
    pickled by ``distributed.protocol.pickle.dumps``, which the handler unpickles.
    """
    return worker.scheduler.register_scheduler_plugin(
        plugin=pickled_plugin, name=name, idempotent=True
    )


def worker_actors(worker: Any) -> list[Any]:
    """The actor instances a worker holds (to stop a call in them).

    ``Worker.state.actors``: the worker state machine's ``{key: instance}`` of the actors
    it runs.
    """
    return list(worker.state.actors.values())


# -- on the scheduler ---------------------------------------------------------------------


def subscribe_on_scheduler(scheduler: Any, topic: str, client_id: str) -> None:
    """Subscribe the client ``client_id`` to ``topic``, on the scheduler, at once.

    ``Scheduler.subscribe_topic(topic, client)``: the handler a client's own
    ``subscribe_topic`` reaches later, through its batched stream; called on the scheduler,
    the subscription is in place when the call returns (``topics``, ``log_store``).
    """
    scheduler.subscribe_topic(topic, client_id)


def cancel_for_all_clients(scheduler: Any, keys: list[str], client_id: str, reason: str) -> None:
    """Cancel ``keys`` for every client holding them, as ``Client.cancel(force=True)`` does.

    ``Scheduler.stimulus_cancel(keys, client, force, reason, msg)``: the scheduler's own
    step behind the ``cancel-keys`` message, run here inside a function already on the
    scheduler (deleting a training), so the cancel and the rest happen in one step.
    """
    scheduler.stimulus_cancel(list(keys), client_id, True, reason, reason)


def topic_events(scheduler: Any, topic: str) -> Any:
    """The scheduler's kept events of ``topic`` (a deque of ``(time, msg)``), or None.

    ``Scheduler._broker._topics[topic].events``: ``get_events`` returns a copy, and
    removing a forgotten training's events needs the deque itself.
    """
    kept = scheduler._broker._topics.get(topic)
    return kept.events if kept is not None else None


def published_datasets(scheduler: Any) -> dict[str, dict[str, Any]]:
    """The scheduler's published datasets: ``{name: {"data", "keys"}}``.

    ``PublishExtension.datasets``: listing every training in one scheduler call reads
    them all at once.
    """
    extension = scheduler.extensions.get("publish")
    return getattr(extension, "datasets", None) or {}


def published_raw(dataset: dict[str, Any]) -> tuple[str, Any, Any]:
    """A published dataset's value as stored: its wire frames, or (in-process) the object.

    A dataset published over a comm is kept ``Serialized`` (``.header``, ``.frames``);
    over ``inproc://`` the object itself, possibly in a ``ToPickle``-like ``.data``.
    """
    data = dataset["data"]
    if hasattr(data, "frames"):
        return ("frames", data.header, [bytes(frame) for frame in data.frames])
    return ("object", getattr(data, "data", data), None)


def drop_published(dataset: str, key: str, *, dask_scheduler: Any) -> None:
    """Forget ``dataset`` (if it still holds ``key``) and its client entry, in one step.

    Unpublishing leaves the ``published-<name>`` entry in ``Scheduler.clients`` (the
    pseudo-client ``PublishExtension`` holds the dataset's keys for), one per dataset,
    so a scheduler serving many trainings and jobs would grow by one entry each. A
    newer run published under the same name since (another key) stays.
    """
    datasets = published_datasets(dask_scheduler)
    record = datasets.get(dataset)
    if record is not None and key in record["keys"]:
        del datasets[dataset]
        dask_scheduler.client_releases_keys(record["keys"], f"published-{dataset}")
    entry = dask_scheduler.clients.get(f"published-{dataset}")
    if entry is not None and not entry.wants_what:
        del dask_scheduler.clients[f"published-{dataset}"]


# The scheduler's HTTP views that call ``adaptive_target()`` only to show it: Prometheus'
# ``dask_scheduler_desired_workers`` and the JSON identity. The HTTP API's
# ``/api/v1/adaptive_target`` (what dask-kubernetes' autoscaler asks) is not among them.
_VIEWS_READING_THE_TARGET = (
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.json",
)


def called_by_a_view(depth: int = 2) -> bool:
    """Whether the function ``depth - 1`` frames up was called by one of the scheduler's
    read-only HTTP views (``_VIEWS_READING_THE_TARGET``), judged by the caller's module.

    A Prometheus scrape of ``/metrics`` calls ``Scheduler.adaptive_target()`` every
    scrape; it must not make a fixed cluster look like one an autoscaler watches.
    """
    caller = sys._getframe(depth).f_globals.get("__name__", "")
    return caller.startswith(_VIEWS_READING_THE_TARGET)


def wrap_scheduler_method(scheduler: Any, name: str, wrap: Callable[[Any], Any]) -> None:
    """Replace ``scheduler.<name>`` and its comm handler with ``wrap(original)``.

    ``Scheduler.handlers`` maps each op to the bound method at start, so wrapping the
    method alone would miss remote callers (the HTTP API, dask-kubernetes). The
    original is kept on the wrapper: a plugin registered again (a new process) wraps
    distributed's own method, never a wrapper.
    """
    current = getattr(scheduler, name)
    original = getattr(current, "wrapped_dask_method", current)
    wrapper = wrap(original)
    wrapper.wrapped_dask_method = original
    setattr(scheduler, name, wrapper)
    scheduler.handlers[name] = wrapper


def add_scheduler_handler(scheduler: Any, name: str, handler: Callable[..., Any]) -> None:
    """Answer the comm op ``name`` on the scheduler with ``handler(**message)``.

    ``Scheduler.handlers``: the op table its server dispatches on (distributed's own
    extensions add theirs there); a worker calls it as ``worker.scheduler.<name>(...)``.
    """
    scheduler.handlers[name] = handler


def add_http_routes(scheduler: Any, routes: list[tuple]) -> None:
    """Serve tornado ``routes`` on the scheduler's HTTP server (the dashboard's port).

    ``ServerNode.http_application`` is the tornado ``Application`` (distributed's
    ``RoutingApplication``) behind it; routes added with ``add_handlers`` are matched
    before the catch-all of its bokeh applications. Without an HTTP server, nothing.
    """
    application = getattr(scheduler, "http_application", None)
    if application is not None:
        application.add_handlers(r".*", routes)


# -- where this code runs ------------------------------------------------------------------


def in_worker_process() -> bool:
    """Whether this process is a Dask worker's (a worker, no scheduler, as ``dask worker``
    and a LocalCluster's worker processes are), judged by ``Worker._instances`` and
    ``Scheduler._instances``: the live servers of this process.

    A model loaded there (an actor's, or a module's sub-model through ``caikit.core.load``)
    loads in place, as LOCAL: a worker whose caikit config names DASK must not start a
    cluster of its own. A caller running an in-process cluster (``processes: false``)
    also holds its scheduler, so it is not taken for a worker.
    """
    from distributed import Scheduler, Worker

    return bool(Worker._instances) and not Scheduler._instances


cloudpickle.register_pickle_by_value(sys.modules[__name__])
