"""The package's public exception types and caikit's error handler bound to its log channel.

Every user-facing error goes through ``error`` so it is logged with a code the way
caikit logs its own, and raised at the call the user made. The exception types a
user can catch are importable from here, wherever they are raised.
"""

from __future__ import annotations

from typing import Any, NoReturn

import alog
from caikit.core.exceptions import error_handler

log = alog.use_channel("DASK")
error = error_handler.get(log)  # error(code, exception) logs and raises (typed NoReturn)


class DaskBackendError(RuntimeError):
    """A Dask-side failure (scheduler unreachable, worker lost, timeout)."""


class DaskConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or malformed."""


def invalid_config(path: str, problem: str, fix: str) -> NoReturn:
    """Raise the DaskConfigError for key ``path``: what is wrong with it and how to fix it."""
    error("<DSK10000001E>", DaskConfigError(f"Invalid config {path}: {problem}. {fix}"))


# Raised by code that runs on workers, so defined beside it; importable from here too.
_DEFINED_ELSEWHERE = {
    "TrainingCanceled": "caikit_dask.training.worker_side",
    "TrainingResultLost": "caikit_dask.training.worker_side",
    "ByValueError": "caikit_dask.training.by_value",
}

__all__ = ["DaskBackendError", "DaskConfigError", "invalid_config", *_DEFINED_ELSEWHERE]


def __getattr__(name: str) -> Any:
    """Import the worker-side types on first use: ``training`` imports this module."""
    if name in _DEFINED_ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_DEFINED_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
