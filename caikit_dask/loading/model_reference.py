"""A loaded model passed to a training: it crosses as a reference to its saved model.

A module composed of other modules trains on a loaded model (``train(block=model)``).
With DASK that model is a proxy, which holds actors and cannot travel; the training's
worker gets the model itself instead, loaded there from the model's path (or from the
zipped model when some worker cannot see that path), as caikit's LOCAL trainer sends a
model to a spawned training process as its saved bytes. The training has its own copy:
what it does to it does not reach the served model.
"""

from __future__ import annotations

import io
from typing import Any

import cloudpickle
from distributed import Client

from ..errors import error
from .actor.model_load import load_model
from .placement.source import _sees_model, model_fingerprint, zip_model
from .proxy import DaskModelProxy, replica_set_of


def dumps(value: Any) -> bytes:
    """cloudpickle, with every proxy inside ``value`` sent as a reference to its model."""
    buffer = io.BytesIO()
    _ReferencingPickler(buffer, protocol=5).dump(value)
    return buffer.getvalue()


class _ReferencingPickler(cloudpickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, DaskModelProxy):
            return reference_to(obj)
        return super().reducer_override(obj)


def reference_to(proxy: DaskModelProxy) -> tuple:
    """How ``proxy`` pickles for a training: ``load_referenced`` of its path or archive."""
    replicas = replica_set_of(proxy)
    replicas.raise_if_closed()
    path = replicas.spec.source.path
    library = replicas.spec.library
    fingerprint = model_fingerprint(path)
    if _every_worker_sees(replicas.client, path, fingerprint):
        return load_referenced, (path, library)
    error.value_check(
        "<DSK60000006E>",
        fingerprint is not None,
        "The loaded model {} passed to the training cannot be sent: its files are gone from "
        "{} and some worker cannot see them there either. Pass a model whose saved files "
        "still exist.",
        proxy.MODULE_ID,
        path,
    )
    return load_referenced, (zip_model(path), library)


def load_referenced(source: str | bytes, library: str | None) -> Any:
    """On the training's worker: the referenced model, loaded in this process."""
    model, _ = load_model(source, library)
    return model


def _every_worker_sees(client: Client, path: str, fingerprint: str | None) -> bool:
    seen = client.run(_sees_model, path, fingerprint)
    return bool(seen) and all(seen.values())
