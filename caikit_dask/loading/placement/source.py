"""What each worker is sent to load: the model's path, or the zipped model.

Workers that see the same model at the caller's path (a shared filesystem) load
it from there; the others get the zipped model scattered to them directly.

A small model (``SNAPSHOT_LIMIT``) is also read once, when its load starts, and
travels with the path: a worker loads the snapshot if the files are gone by the time
its actor starts. caikit.runtime's undeploy removes a model's files and then waits for
its load to finish; LOCAL has read them by then, and so has DASK.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from typing import Any

from distributed import Client

from ...errors import error, log
from .memory import size_on_disk

SNAPSHOT_LIMIT = 1 << 20  # bytes on disk up to which a model is read when its load starts


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


class ModelSource:
    """What to hand each worker: the path if it sees the same model there, else the bytes."""

    def __init__(self, path: str):
        self.path = path
        self.fingerprint = model_fingerprint(path)
        small = self.fingerprint is not None and size_on_disk(path) <= SNAPSHOT_LIMIT
        self.snapshot = zip_model(path) if small else None

    def for_worker(self, client: Client, worker: str) -> Any:
        """The path, the zipped model, or (path, snapshot) (see ``actor.model_load``)."""
        sees = client.run(_sees_model, self.path, self.fingerprint, workers=[worker])
        if sees.get(worker):
            return self.path if self.snapshot is None else (self.path, self.snapshot)
        if self.snapshot is not None:
            return self.snapshot
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
