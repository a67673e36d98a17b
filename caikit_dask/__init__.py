"""caikit-dask: caikit's shared train and load backends (ADR 018) on Dask.

Importing this package registers, with caikit's own registries, the module
backend type ``DASK`` and the model trainer and initializer types ``DASK``.
It also imports the bundled example library: caikit.runtime only serves
top-level libraries, so ``runtime.library: caikit_dask`` serves the example.
"""

from . import dask_defaults  # noqa: F401, I001 - first: dask config defaults
from caikit.core.model_management import model_initializer_factory, model_trainer_factory
from caikit.core.module_backends.backend_types import register_backend_type
from caikit.core.toolkit.wip_decorator import TempDisableWIP

from . import example
from .backend import DaskBackend
from .initializer import DaskModelInitializer
from .local_backend import LocalSharedBackend
from .prediction_jobs.predictor import DaskJobPredictor, register_job_predictor
from .shared_backends import SharedLoadBackend, SharedTrainBackend
from .trainer import DaskModelTrainer

__all__ = [
    "DaskBackend",
    "DaskJobPredictor",
    "DaskModelInitializer",
    "DaskModelTrainer",
    "LocalSharedBackend",
    "SharedLoadBackend",
    "SharedTrainBackend",
    "example",
]


def _register() -> None:
    with TempDisableWIP():
        register_backend_type(DaskBackend)
        register_backend_type(LocalSharedBackend)
    model_trainer_factory.register(DaskModelTrainer)
    model_initializer_factory.register(DaskModelInitializer)
    register_job_predictor()


_register()
