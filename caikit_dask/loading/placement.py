"""Where a model's actors go, and what each worker is sent to load.

Dask holds an actor's resources only while its constructor runs
(distributed#2843), so two GPU models would land on the same one-GPU worker.
We record every placement (worker, actor key, resources) in the scheduler's
metadata and only place where the declared resources minus those already taken
still cover the request. Workers that cannot see the model path get the zipped
model scattered to them directly.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
import zipfile
from typing import Any

from distributed import Client, Future

from ..errors import DaskBackendError, error, log
from ..resources import describe_missing

PLACEMENTS = "caikit-dask-placements"


def model_fingerprint(path: str) -> str | None:
    """A digest of the model's config.yml, to tell a same-named but different model apart."""
    config = os.path.join(path, "config.yml")
    if not os.path.isfile(config):
        return None
    with open(config, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def zip_model(path: str) -> bytes:
    """The model directory as a zip archive (for workers without the shared filesystem)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for root, _, files in os.walk(path):
            for name in files:
                full = os.path.join(root, name)
                archive.write(full, os.path.relpath(full, path))
    return buffer.getvalue()


def _taken(client: Client) -> dict[str, dict[str, float]]:
    """Resources our live placements hold, per worker."""
    placements = client.get_metadata([PLACEMENTS], default={}) or {}
    taken: dict[str, dict[str, float]] = {}
    for worker, actors in placements.items():
        for resources in (actors or {}).values():
            for name, amount in (resources or {}).items():
                taken.setdefault(worker, {})[name] = taken.get(worker, {}).get(name, 0) + amount
    return taken


def choose_workers(
    client: Client, count: int, resources: dict[str, float], exclude: set[str] = frozenset()
) -> list[str]:
    """Up to ``count`` workers for new actors: distinct where possible, least loaded first."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    taken = _taken(client) if resources else {}
    loads = {address: len(actors or {}) for address, actors in _placements(client).items()}
    candidates = []
    for address, info in workers.items():
        if address in exclude:
            continue
        offered = info.get("resources") or {}
        used = taken.get(address, {})
        if all(offered.get(n, 0) - used.get(n, 0) >= amount for n, amount in resources.items()):
            candidates.append(address)
    if not candidates:
        offered = {a: (i.get("resources") or {}) for a, i in workers.items() if a not in exclude}
        reason = (
            describe_missing(offered, resources)
            if resources
            else "the cluster has no (other) workers"
        )
        error("<DSK50000001E>", DaskBackendError(f"Cannot place the model: {reason}."))
    candidates.sort(key=lambda address: (loads.get(address, 0), address))
    if resources:
        return candidates[:count]
    return [candidates[i % len(candidates)] for i in range(count)]


def _placements(client: Client) -> dict[str, dict]:
    return client.get_metadata([PLACEMENTS], default={}) or {}


def record_placement(client: Client, worker: str, key: str, resources: dict) -> None:
    client.set_metadata([PLACEMENTS, worker, key], dict(resources))


def forget_placement(client: Client, worker: str, key: str) -> None:
    """Drop a placement record (metadata has no delete, so rewrite the worker's entry)."""
    try:
        actors = client.get_metadata([PLACEMENTS, worker], default={}) or {}
        actors.pop(key, None)
        client.set_metadata([PLACEMENTS, worker], actors)
    except Exception as err:  # noqa: BLE001 - cleanup on a closing or lost connection
        log.debug("Could not forget placement %s on %s: %s", key, worker, err)


class ModelSource:
    """What to hand each worker: the path if it sees the same model there, else the bytes."""

    def __init__(self, path: str):
        self.path = path
        self.fingerprint = model_fingerprint(path)

    def for_worker(self, client: Client, worker: str) -> Any:
        sees = client.run(_sees_model, self.path, self.fingerprint, workers=[worker])
        if sees.get(worker):
            return self.path
        error.value_check(
            "<DSK50000002E>",
            self.fingerprint is not None,
            "No caikit model at {} on the caller or on worker {}. Check the path, or copy "
            "the model to storage the workers can read.",
            self.path,
            worker,
        )
        log.info("Worker %s cannot see %s; sending the model archive", worker, self.path)
        [future] = client.scatter([zip_model(self.path)], workers=[worker], direct=True)
        return future


def _sees_model(path: str, fingerprint: str | None) -> bool:
    """Run on a worker: is this the same model (or, with no local copy, any model)?"""
    found = model_fingerprint(path)
    return found is not None and (fingerprint is None or found == fingerprint)


def start_actor(
    client: Client,
    source: Any,
    worker: str,
    resources: dict[str, float],
    module_id: str,
    timeout: float,
    library: str | None = None,
) -> tuple[Future, Any]:
    """Construct a ModelActor on ``worker``; raises the load error within ``timeout``."""
    from .actor import ModelActor

    key = f"caikit-model-{module_id}-{uuid.uuid4().hex[:12]}"
    options: dict[str, Any] = {"workers": [worker], "allow_other_workers": False}
    if resources:
        options["resources"] = resources
    future = client.submit(ModelActor, source, library, key=key, actor=True, pure=False, **options)
    try:
        actor = _wait_for_actor(client, future, worker, timeout)
    except WorkerLostDuringLoad:
        future.release()
        raise
    except TimeoutError:
        future.release()
        error(
            "<DSK50000003E>",
            DaskBackendError(
                f"Loading the model on worker {worker} did not finish within "
                f"call_timeout={timeout:g}s. Raise call_timeout for large models."
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
    record_placement(client, worker, key, resources)
    return future, actor


def detach_handle_future(actor: Any) -> Any:
    """Make a dead actor fail fast instead of waiting to be recomputed.

    distributed's Actor handle keeps its own future for the actor; when its worker
    dies, a call awaits that future (the actor task, restricted to the dead worker,
    never reruns) and hangs. Our Replica holds the actor's lifetime with its own
    future, so the handle's is released: a call to a dead actor then raises OSError
    at once and the replica set retries elsewhere. This also breaks the handle's
    reference cycle that kept actors alive until a garbage collection.
    """
    handle_future = getattr(actor, "_future", None)
    if handle_future is not None:
        actor._future = None
        handle_future.release()
    return actor


class WorkerLostDuringLoad(DaskBackendError):
    """The worker chosen for an actor left the cluster while the model loaded."""


def _wait_for_actor(client: Client, future: Future, worker: str, timeout: float) -> Any:
    """The actor handle, checking between short waits that its worker is still there."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            # The Actor handle binds to the *current* client; ours is deliberately not the default.
            with client.as_current():
                return detach_handle_future(future.result(timeout=min(remaining, 0.5)))
        except TimeoutError:
            if worker not in client.scheduler_info(n_workers=-1)["workers"]:
                raise WorkerLostDuringLoad(
                    f"Worker {worker} left the cluster while loading the model"
                ) from None


def _rebuildable(err: Exception) -> bool:
    try:
        type(err)("probe")
    except Exception:  # noqa: BLE001
        return False
    return True
