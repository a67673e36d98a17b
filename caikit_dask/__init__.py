"""caikit-dask: caikit's shared train and load backends (ADR 018) on Dask.

Importing this package registers, with caikit's own registries, the module
backend type ``DASK`` and the model trainer and initializer types ``DASK``.
"""

from caikit.core.model_management import model_initializer_factory, model_trainer_factory
from caikit.core.module_backends.backend_types import register_backend_type
from caikit.core.toolkit.wip_decorator import TempDisableWIP

from .backend import DaskBackend
from .initializer import DaskModelInitializer
from .local_backend import LocalSharedBackend
from .shared_backends import SharedLoadBackend, SharedTrainBackend
from .trainer import DaskModelTrainer

__all__ = [
    "DaskBackend",
    "DaskModelInitializer",
    "DaskModelTrainer",
    "LocalSharedBackend",
    "SharedLoadBackend",
    "SharedTrainBackend",
]


def _register() -> None:
    with TempDisableWIP():
        register_backend_type(DaskBackend)
        register_backend_type(LocalSharedBackend)
    model_trainer_factory.register(DaskModelTrainer)
    model_initializer_factory.register(DaskModelInitializer)


_register()
