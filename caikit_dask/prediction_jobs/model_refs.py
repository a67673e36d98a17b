"""How a prediction job's task reaches its model on the worker.

A model loaded locally (a plain caikit module) has no path caikit remembers, so
it is shipped by value: its ``as_bytes()`` archive (cloudpickle for a module
without ``save``), scattered once and loaded at most once per worker. A DASK-loaded
proxy is reached through its published actors (``DaskBackend.attach``), and its
calls carry the job's task key so a cancel stops them on the actor.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import threading
from typing import Any

import cloudpickle

# Loaded local models per worker process, by the key of their scattered archive.
_LOADED_LIMIT = 4
_loaded: collections.OrderedDict[str, Any] = collections.OrderedDict()
_loaded_lock = threading.Lock()

# Calls through the actors are background work: let them run long (1 day).
ACTOR_CALL_TIMEOUT = "24h"


class LocalModelRef:
    """A model shipped by value; the task receives the archive as ``payload``."""

    def __init__(self, library: str, pickled: bool, cache_key: str):
        self.library, self.pickled, self.cache_key = library, pickled, cache_key

    def prepare(self) -> None:
        """Nothing to do in the task's own thread."""

    def open(self, payload: bytes) -> Any:
        with _loaded_lock:
            if self.cache_key in _loaded:
                _loaded.move_to_end(self.cache_key)
                return _loaded[self.cache_key]
        if self.pickled:
            model = cloudpickle.loads(payload)
        else:
            import caikit.core

            importlib.import_module(self.library)  # registers the module class here
            model = caikit.core.load(payload)
        with _loaded_lock:
            _loaded[self.cache_key] = model
            while len(_loaded) > _LOADED_LIMIT:
                _loaded.popitem(last=False)
        return model

    def call(self, model: Any, call_id: str, method: str, args: tuple, kwargs: dict) -> Any:
        return getattr(model, method)(*args, **kwargs)

    def close(self, model: Any) -> None:
        """The model stays cached for the next job on this worker."""

    def describe(self) -> str:
        return f"local model ({self.library})"


class PublishedModelRef:
    """A DASK-loaded model: its actors, published under ``name`` by the submitter."""

    def __init__(self, name: str, library: str):
        self.name, self.library = name, library
        self._backend: Any = None

    def prepare(self) -> None:
        """In the task's thread (where the worker is known): open the worker's client.

        It becomes the process's default client, which the backend then borrows.
        """
        from distributed import get_client

        get_client()

    def open(self, payload: Any) -> Any:
        from ..backend import DaskBackend

        # Registers the module class the proxy wraps; if it fails, attach names the class.
        with contextlib.suppress(ImportError):
            importlib.import_module(self.library)
        self._backend = DaskBackend({"call_timeout": ACTOR_CALL_TIMEOUT})
        return self._backend.attach(self.name)

    def call(self, model: Any, call_id: str, method: str, args: tuple, kwargs: dict) -> Any:
        """A unary call carries ``call_id``, so cancelling the job stops it on the actor."""
        if method not in model.unary_methods:
            return getattr(model, method)(*args, **kwargs)
        from ..loading.calls.stoppable import call_stoppable
        from ..loading.proxy import replica_set_of

        return call_stoppable(replica_set_of(model), call_id, method, args, kwargs)

    def close(self, model: Any) -> None:
        model.close()  # an attached proxy only drops its own handles
        if self._backend is not None:
            self._backend.stop()

    def describe(self) -> str:
        return f"published model {self.name!r}"
