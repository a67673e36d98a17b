"""The package's public exception types and caikit's error handler bound to its log channel.

Every user-facing error goes through ``error`` so it is logged with a code the way
caikit logs its own, and raised at the call the user made. The exception types a
user can catch are importable from here, wherever they are raised.
"""

from __future__ import annotations

from typing import NoReturn

import alog
import grpc
from caikit.core.exceptions import error_handler
from caikit.runtime.types.caikit_runtime_exception import CaikitRuntimeException

log = alog.use_channel("DASK")
error = error_handler.get(log)  # error(code, exception) logs and raises (typed NoReturn)


class DaskBackendError(RuntimeError):
    """A Dask-side failure (scheduler unreachable, worker lost, timeout)."""


class ModelOverloaded(DaskBackendError, CaikitRuntimeException):
    """A call refused at once because the model's queue is full (``max_queued_calls``).

    A ``CaikitRuntimeException`` with gRPC status RESOURCE_EXHAUSTED, so
    ``caikit.runtime`` answers gRPC RESOURCE_EXHAUSTED and HTTP 503 (see
    ``overload_status``) instead of an internal error.
    """

    def __init__(self, message: str):
        CaikitRuntimeException.__init__(self, grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    def __reduce__(self) -> tuple:
        return type(self), (self.message,)


class DaskConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or malformed."""


def invalid_config(path: str, problem: str, fix: str) -> NoReturn:
    """Raise the DaskConfigError for key ``path``: what is wrong with it and how to fix it."""
    error("<DSK10000001E>", DaskConfigError(f"Invalid config {path}: {problem}. {fix}"))


class TrainingCanceled(RuntimeError):
    """Raised by the task of a training that was canceled while it ran."""


class PredictionCanceled(RuntimeError):
    """Raised by a prediction job (and its call on a model's actor) that was canceled."""


class TrainingResultLost(RuntimeError):
    """Raised instead of training again when Dask recomputes a finished training.

    Dask recomputes a finished task whose result was on a worker that died; for a
    training that would silently retrain (and take a GPU again).
    """


class RankFailed(DaskBackendError):
    """One rank of a training with ``world_size`` > 1 failed (or lost its worker): the
    training failed. Names the rank and its worker; ``rank_error`` is the rank's own
    exception when it raised one."""

    def __init__(
        self,
        message: str,
        rank: int | None = None,
        worker: str | None = None,
        rank_error: BaseException | None = None,
    ):
        super().__init__(message)
        self.rank, self.worker, self.rank_error = rank, worker, rank_error

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.rank, self.worker, self.rank_error)


class ByValueError(TypeError):
    """A class defined where workers cannot import it, that cannot be sent by value either."""


class BatchInputError(RuntimeError):
    """One input of ``proxy.map`` failed: names it; the model's exception is its ``__cause__``."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index
