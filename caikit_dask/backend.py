"""``DaskBackend``: caikit's ADR 018 shared train and load backends on Dask.

This is the layer between caikit's adapters (the DASK trainer and initializer)
and Dask itself: it owns the connection and turns a module class or a model
path into Dask tasks and actors.
"""

from __future__ import annotations

import uuid
from typing import Any

from caikit.core.modules import ModuleBase
from distributed import Client

from .config import BackendConfig
from .connection import DaskConnection
from .resources import submit_options
from .shared_backends import SharedLoadBackend, SharedTrainBackend
from .training import submit
from .training.gang.size import world_size_for
from .training.handle import DaskTraining


class DaskBackend(SharedTrainBackend, SharedLoadBackend):
    """Trains modules as Dask tasks and serves models from Dask actors."""

    backend_type = "DASK"

    def __init__(
        self,
        config: Any = None,
        *,
        path: str = "DASK backend config",
        allowed: frozenset = BackendConfig.BACKEND_KEYS,
    ):
        super().__init__(config)
        self._path, self._allowed = path, allowed
        self.settings = BackendConfig.from_mapping(config or {}, path, allowed)
        self.connection = DaskConnection.from_config(self.settings.connection)

    def register_config(self, config: dict) -> None:
        """Merge module-specific overrides (caikit calls this before start)."""
        merged = {**dict(self.config or {}), **dict(config or {})}
        self.settings = BackendConfig.from_mapping(merged, self._path, self._allowed)
        self.config = merged
        self.connection = DaskConnection.from_config(self.settings.connection)

    def start(self) -> None:
        with self.start_lock():
            if not self._started:
                self.connection.acquire()
                self._started = True

    def stop(self) -> None:
        with self.start_lock():
            if self._started:
                self._started = False
                self.connection.release()

    @property
    def client(self) -> Client:
        """The Dask client, connecting on first use."""
        if not self._started:
            self.start()
        return self.connection.client

    # -- training --------------------------------------------------------------------------

    def submit_training(
        self,
        module_class: type[ModuleBase],
        args: tuple,
        kwargs: dict,
        *,
        save_path: str | None = None,
        training_id: str | None = None,
    ) -> DaskTraining:
        """Start ``module_class.train`` on a worker (or as ``world_size`` ranks on as many
        workers); returns at once."""
        module_id = getattr(module_class, "MODULE_ID", None)
        options = submit_options(
            self.settings.resources,
            self.settings.module_resources,
            module_id,
            self.settings.retries,
        )
        return submit.submit(
            self.client,
            module_class,
            args,
            kwargs,
            save_path,
            training_id or str(uuid.uuid4()),
            options,
            self.settings.resource_timeout,
            self.settings.max_payload_size,
            self.settings.log_lines,
            world_size_for(self.settings.world_size, self.settings.module_world_size, module_id),
        )

    def find_training(self, training_id: str) -> DaskTraining:
        """A training submitted by any client of this scheduler (NOT_FOUND otherwise)."""
        return submit.reattach(self.client, training_id)

    def list_trainings(self) -> list[DaskTraining]:
        """Every training on this scheduler, from any client, read in one scheduler call."""
        return submit.list_all(self.client)

    def train(self, module_class: type[ModuleBase], *args: Any, **kwargs: Any) -> ModuleBase:
        training = self.submit_training(module_class, args, kwargs)
        try:
            return training.result()
        finally:
            training.release()

    # -- loading ---------------------------------------------------------------------------

    def load(self, model_path: Any, *args: Any, **kwargs: Any) -> ModuleBase | None:
        from .loading import loader

        self.start()
        return loader.load(self.settings, self.connection, model_path)

    def attach(self, name: str) -> ModuleBase:
        """A proxy on a model another process loaded and published under ``name``."""
        from .loading import loader

        self.start()
        return loader.attach(self.settings, self.connection, name)

    def unpublish(self, name: str) -> None:
        """Let a published model's actors go once no proxy holds them."""
        from .loading.publishing import unpublish

        unpublish(self.client, name)
