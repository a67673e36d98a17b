"""Moving trained models between processes that may share no filesystem.

caikit modules are not generally picklable (protobuf descriptors, native
handles), but every saveable module round-trips through ``as_bytes`` and
``caikit.core.load``; a module without ``save`` falls back to cloudpickle.
"""

from __future__ import annotations

import cloudpickle
from caikit.core.modules import ModuleBase


def _from_archive(archive: bytes, library: str | None = None) -> ModuleBase:
    """Load a shipped model, importing its library first so its module is registered."""
    import importlib

    import caikit.core

    if library:
        importlib.import_module(library)
    return caikit.core.load(archive)


class ShippedModel:
    """Wraps a model so that pickling it sends its saved archive."""

    def __init__(self, model: ModuleBase):
        self.model = model

    def __reduce__(self):
        try:
            return _from_archive, (self.model.as_bytes(), type(self.model).__module__)
        except NotImplementedError:
            return cloudpickle.loads, (cloudpickle.dumps(self.model),)
