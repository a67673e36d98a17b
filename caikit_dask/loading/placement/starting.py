"""Starting one model actor on a chosen worker, and waiting for it to be loaded."""

from __future__ import annotations

import time
from typing import Any

from distributed import Client, Future, wait

from ... import cluster_state
from ...dask_internals import actor_handle, detach_actor_future
from ...errors import DaskBackendError, error
from ...formatting import seconds
from ..actor.model_actor import ModelActor
from ..wire.liveness import liveness


class WorkerLostDuringLoad(DaskBackendError):
    """The worker chosen for an actor left the cluster while the model loaded."""


def start_actor(
    client: Client,
    source: Any,
    worker: str,
    key: str,
    resources: dict[str, float],
    timeout: float,
    library: str | None = None,
    silent_within: float | None = None,
) -> tuple[Future, Any]:
    """Construct a ModelActor as ``key`` on ``worker``; raises the load error within ``timeout``.

    A worker that leaves, or (``silent_within``, the health_check_timeout) stops
    answering pings while it loads, raises ``WorkerLostDuringLoad`` (load elsewhere).
    """
    options: dict[str, Any] = {"workers": [worker], "allow_other_workers": False}
    if resources:
        options["resources"] = resources
    future = client.submit(ModelActor, source, library, key=key, actor=True, pure=False, **options)
    try:
        return future, _wait_for_actor(client, future, worker, timeout, silent_within)
    except WorkerLostDuringLoad:
        future.release()
        raise
    except TimeoutError:
        future.release()
        error(
            "<DSK50000003E>",
            DaskBackendError(
                f"Loading the model on worker {worker} did not finish within "
                f"call_timeout={seconds(timeout)}. Raise call_timeout for large models."
            ),
        )
    except Exception as err:
        future.release()
        error(
            "<DSK50000004E>",
            type(err)(f"Loading the model on Dask worker {worker} failed: {err}")
            if _rebuildable(err)
            else DaskBackendError(f"Loading the model on Dask worker {worker} failed: {err!r}"),
        )


def detach_handle_future(actor: Any) -> Any:
    """Make a dead actor fail fast instead of waiting to be recomputed.

    distributed's Actor handle keeps its own future for the actor; when its worker
    dies, a call awaits that future (the actor task, restricted to the dead worker,
    never reruns) and hangs. Our Replica holds the actor's lifetime with its own
    future, so the handle's is released: a call to a dead actor then raises OSError
    at once and the replica set retries elsewhere. This also breaks the handle's
    reference cycle that kept actors alive until a garbage collection.
    """
    handle_future = detach_actor_future(actor)
    if handle_future is not None:
        handle_future.release()
    return actor


def _wait_for_actor(
    client: Client, future: Future, worker: str, timeout: float, silent_within: float | None
) -> Any:
    """The actor handle, checking between short waits that its worker is still there
    and still answering (a frozen worker stays listed for minutes).

    The short waits only watch the task's state (a short timeout on ``future.result``
    could end the fetch midway, and under load distributed then raised an
    UnboundLocalError from ``sync``); once the actor is built, its handle is made here.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        # ``wait`` and the Actor handle use the *current* client; ours is not the default.
        with client.as_current():
            try:
                wait([future], timeout=min(remaining, 0.5))
            except TimeoutError:
                if _left(client, worker):
                    raise WorkerLostDuringLoad(
                        f"Worker {worker} left the cluster while loading the model"
                    ) from None
                silent = liveness.silence(client, worker)
                if silent_within is not None and silent > silent_within:
                    raise WorkerLostDuringLoad(
                        f"Worker {worker} has not answered a ping for {seconds(round(silent, 1))}"
                        f" (health_check_timeout={seconds(silent_within)}) while loading the model"
                    ) from None
                continue
            if future.status == "finished":
                # The handle the worker would send back, built here: no fetch round trip.
                return detach_handle_future(actor_handle(ModelActor, worker, future.key))
            return detach_handle_future(future.result(timeout=max(remaining, 1.0)))


def _left(client: Client, worker: str) -> bool:
    """Whether ``worker`` definitely left; an unanswered question is no answer."""
    try:
        return worker not in cluster_state.workers(client)
    except OSError:
        return False


def _rebuildable(err: Exception) -> bool:
    try:
        type(err)("probe")
    except Exception:  # noqa: BLE001
        return False
    return True
