"""Moving trained models between processes that may share no filesystem.

caikit modules are not generally picklable (protobuf descriptors, native handles), but most
round-trip through ``as_bytes`` and ``caikit.core.load``. Those that don't (no ``save``, or a
default save that can't be loaded on its own, like caikit-nlp's prompt tuning, which saves only
its prompt vectors) are sent with cloudpickle instead: the caller gets the trained model back,
as caikit's LOCAL trainer hands back the in-memory one.
"""

from __future__ import annotations

import cloudpickle
from caikit.core.modules import ModuleBase

from ..errors import log


def _from_archive(archive: bytes, library: str | None = None) -> ModuleBase:
    """Load a shipped model, importing its library first so its module is registered."""
    import importlib

    from ..local_backend import load_in_this_process

    if library:
        importlib.import_module(library)
    return load_in_this_process(archive)


class ShippedModel:
    """Wraps a model so that pickling it sends its saved archive, checked to load back, or
    else the model itself (cloudpickle).

    The cost, paid on the worker the first time the result is sent: one more load of the
    archive (time, and briefly the memory of a second copy of the model). Only the outcome is
    kept, not the bytes, so a result held on the worker takes no more memory than its model.
    The cloudpickle fallback needs the same library versions where it is unpickled, and may
    be larger than the archive (a prompt-tuned model carries its base model's weights).
    """

    def __init__(self, model: ModuleBase):
        self.model = model
        self._archive_loads_back: bool | None = None  # decided on the first send

    def __reduce__(self):
        library = type(self.model).__module__
        if self._archive_loads_back is None:
            try:
                archive = self.model.as_bytes()
                _from_archive(archive, library)
            except Exception as err:  # noqa: BLE001 - whatever breaks the round trip
                log.info(
                    "<DSK30000030I>",
                    "Sending the trained %s pickled: its saved archive does not load back (%s: %s)",
                    type(self.model).__name__,
                    type(err).__name__,
                    err,
                )
                self._archive_loads_back = False
            else:
                self._archive_loads_back = True
                return _from_archive, (archive, library)
        if self._archive_loads_back:
            return _from_archive, (self.model.as_bytes(), library)
        return cloudpickle.loads, (cloudpickle.dumps(self.model),)


class PickledModel:
    """A trained model already pickled as a ``ShippedModel``, kept as bytes.

    A rank of a training with ``world_size`` > 1 returns its model this way: the
    driver passes it on without loading the model on its own worker; the caller
    reads ``model``.
    """

    def __init__(self, blob: bytes):
        self.blob = blob

    @classmethod
    def of(cls, model: ModuleBase) -> PickledModel:
        return cls(cloudpickle.dumps(ShippedModel(model)))

    @property
    def model(self) -> ModuleBase:
        return cloudpickle.loads(self.blob)
