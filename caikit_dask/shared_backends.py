"""caikit ADR 018 interfaces: backends that run any module as a black box.

A SharedTrainBackend runs a module class's ``train`` somewhere else; a
SharedLoadBackend loads a model somewhere else and returns a module whose task
methods run there (inference goes through *load* because it needs loaded state).
"""

from __future__ import annotations

import abc
from typing import Any

from caikit.core.module_backends.base import BackendBase
from caikit.core.modules import ModuleBase


class SharedTrainBackend(BackendBase):
    """Runs ``module_class.train(*args, **kwargs)`` in the backend's engine."""

    @abc.abstractmethod
    def train(self, module_class: type[ModuleBase], *args: Any, **kwargs: Any) -> ModuleBase:
        """Block until training ends and return the trained model."""


class SharedLoadBackend(BackendBase):
    """Loads a model in the backend's engine and returns a runnable module for it."""

    @abc.abstractmethod
    def load(self, model_path: Any, *args: Any, **kwargs: Any) -> ModuleBase | None:
        """A module whose task methods run in the engine, or None if this backend can't."""
