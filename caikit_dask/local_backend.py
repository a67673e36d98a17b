"""The LOCAL backend recast as both ADR 018 shared backends, in-process.

It is the reference the Dask backend is held to: one contract suite runs against both.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import aconfig
from caikit.core import MODEL_MANAGER
from caikit.core.model_management.local_model_initializer import LocalModelInitializer
from caikit.core.modules import ModuleBase, ModuleConfig
from caikit.core.registries import module_registry

from .errors import error, log
from .shared_backends import SharedLoadBackend, SharedTrainBackend


class LocalSharedBackend(SharedTrainBackend, SharedLoadBackend):
    """Train and load in the calling process."""

    backend_type = "LOCAL_SHARED"

    def register_config(self, config: dict) -> None:
        self.config = {**self.config, **config}

    def start(self) -> None:
        self._started = True

    def stop(self) -> None:
        self._started = False

    def train(self, module_class: type[ModuleBase], *args: Any, **kwargs: Any) -> ModuleBase:
        return module_class.train(*args, **kwargs)

    def load(self, model_path: Any, *args: Any, **kwargs: Any) -> ModuleBase | None:
        model_config = resolve_model_config(model_path)
        module_class = module_registry().get(model_config.module_id)
        if module_class is None:
            return None
        try:
            return module_class.load(model_config, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - retried with the path, as caikit's LOCAL does
            # Many libraries' load() takes the model's path only (os.path.join on it);
            # caikit's own LOCAL initializer falls back to the path the same way.
            log.debug(
                "Loading %s with its ModuleConfig failed (%s); using its path",
                model_config.model_path,
                err,
            )
            return module_class.load(model_config.model_path, *args, **kwargs)


_local_initializer: LocalModelInitializer | None = None
_in_process = threading.local()


def load_in_this_process(source: Any) -> ModuleBase:
    """``caikit.core.load(source)`` with caikit's LOCAL initializer, whatever the configured
    default, and so are the sub-models it loads (see ``loading_in_this_process``): a trained
    model shipped back to its caller is the model itself, as LOCAL's trainer hands it over
    (through a DASK default it would go into actors, from the client's event loop where the
    result arrives)."""
    global _local_initializer
    if _local_initializer is None:
        _local_initializer = LocalModelInitializer(
            aconfig.Config({}, override_env_vars=False), "caikit-dask-in-process"
        )
    depth = getattr(_in_process, "depth", 0)
    _in_process.depth = depth + 1
    try:
        return MODEL_MANAGER.load(source, initializer=_local_initializer)
    finally:
        _in_process.depth = depth


def loading_in_this_process() -> bool:
    """Whether this thread is inside ``load_in_this_process`` (a module's ``load`` loading
    its sub-models through caikit's default initializer, which may be DASK)."""
    return getattr(_in_process, "depth", 0) > 0


def resolve_model_config(model_path: Any) -> ModuleConfig:
    """A ModuleConfig from a path or a ModuleConfig, with a clear error when it isn't a model."""
    if isinstance(model_path, ModuleConfig):
        return model_path
    error.type_check("<DSK20000001E>", str, os.PathLike, model_path=model_path)
    path = os.fspath(model_path)
    error.value_check(
        "<DSK20000002E>",
        os.path.isdir(path) and os.path.exists(os.path.join(path, "config.yml")),
        "No caikit model at {}: expected a directory with a config.yml. "
        "Check the path, or save the model there first.",
        path,
    )
    return ModuleConfig.load(path)
