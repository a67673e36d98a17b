"""``DaskModelInitializer``: caikit's model initializer (ADR 020) of type DASK.

``caikit.load`` and ``caikit.runtime`` hand it a ModuleConfig found on disk;
it loads the model into actors through ``DaskBackend`` and returns the proxy.
"""

from __future__ import annotations

from typing import Any

import aconfig
from caikit.core.model_management.model_initializer_base import ModelInitializerBase
from caikit.core.modules import ModuleBase, ModuleConfig

from .backend import DaskBackend
from .config import BackendConfig
from .overload_status import answer_overload_with_503


class DaskModelInitializer(ModelInitializerBase):
    __doc__ = __doc__

    name = "DASK"

    def __init__(self, config: aconfig.Config, instance_name: str):
        self._instance_name = instance_name
        self.backend = DaskBackend(
            config,
            path=f"model_management.initializers.{instance_name}.config",
            allowed=BackendConfig.INITIALIZER_KEYS,
        )
        if self.backend.settings.max_queued_calls is not None:
            answer_overload_with_503()

    def init(self, model_config: ModuleConfig, **kwargs: Any) -> ModuleBase | None:
        """Load into actors; None when no registered module matches the model."""
        model = self.backend.load(model_config, **kwargs)
        if model is not None:
            model.set_load_backend(self.backend)
        return model
