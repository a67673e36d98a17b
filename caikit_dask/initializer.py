"""``DaskModelInitializer``: caikit's model initializer (ADR 020) of type DASK.

``caikit.load`` and ``caikit.runtime`` hand it a ModuleConfig found on disk;
it loads the model into actors through ``DaskBackend`` and returns the proxy.

It is caikit's LOCAL initializer in every other respect, so that a runtime switching
to DASK keeps what LOCAL gave it: the ``backend_priority`` backends are built the
same way and ``caikit.runtime`` tells them each request's context
(``handle_runtime_context``; caikit looks for them on LOCAL initializers); and on a
Dask worker, where models run, a load (a module's sub-model, say) happens in place as
LOCAL does, instead of starting a cluster inside the worker; so do the sub-models of a
model loaded in the caller's process (a trained model shipped back, see
``local_backend.load_in_this_process``).
"""

from __future__ import annotations

from typing import Any

import aconfig
from caikit.core.model_management.local_model_initializer import LocalModelInitializer
from caikit.core.modules import ModuleBase, ModuleConfig

from .backend import DaskBackend
from .config import BackendConfig
from .dask_internals import in_worker_process
from .local_backend import loading_in_this_process
from .overload_status import answer_overload_with_503


class DaskModelInitializer(LocalModelInitializer):
    __doc__ = __doc__

    name = "DASK"

    def __init__(self, config: aconfig.Config, instance_name: str):
        super().__init__(_local_part(config), instance_name)
        self.backend = DaskBackend(
            config,
            path=f"model_management.initializers.{instance_name}.config",
            allowed=BackendConfig.INITIALIZER_KEYS,
        )
        if self.backend.settings.max_queued_calls is not None:
            answer_overload_with_503()

    def init(self, model_config: ModuleConfig, **kwargs: Any) -> ModuleBase | None:
        """Load into actors; None when no registered module matches the model."""
        if in_worker_process() or loading_in_this_process():
            return super().init(model_config, **kwargs)
        model = self.backend.load(model_config, **kwargs)
        if model is not None:
            model.set_load_backend(self.backend)
        return model


def _local_part(config: Any) -> aconfig.Config:
    """The keys caikit's LOCAL initializer reads (``backend_priority``), as an aconfig."""
    local = {}
    if config and config.get("backend_priority") is not None:
        local["backend_priority"] = config.get("backend_priority")
    return aconfig.Config(local, override_env_vars=False)
