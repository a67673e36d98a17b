"""How a model's exception crosses back to the caller: as itself, or as a faithful stand-in.

Pickle rebuilds an exception by calling its class with ``args``; that fails for many
(caikit's ``CaikitCoreException`` needs ``status_code`` and ``message``; a gRPC
``RpcError`` holds a lock and does not pickle at all). So the worker checks the round
trip there and sends, in this order:

1. the exception as pickle sends it, when pickle can rebuild it;
2. its class, ``args`` and attributes, rebuilt without calling ``__init__`` (what pickle
   does for any other object): the caller gets its own type, attributes included;
3. a stand-in: ``RemoteError`` with the message, the worker's type name and traceback;
   for a caikit error or a gRPC error a subclass of caikit's ``CaikitCoreException`` /
   ``CaikitRuntimeException`` or of ``grpc.RpcError`` with the same status code, so
   ``caikit.runtime`` answers the same gRPC/HTTP status as with LOCAL.

Each step's bytes are checked to load back on the worker; the caller falls back to the
stand-in if its own process cannot load the first (a class it cannot import).
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

import cloudpickle
import grpc
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.runtime.types.caikit_runtime_exception import CaikitRuntimeException


class RemoteError(Exception):
    """An exception raised on a worker whose own type could not be rebuilt here.

    ``str()`` is the original's message; ``remote_type`` names its class and
    ``remote_traceback`` is the worker's traceback.
    """

    remote_type: str = ""
    remote_traceback: str = ""

    def __init__(self, message: str, remote_type: str = "", remote_traceback: str = ""):
        super().__init__(message)
        self.remote_type, self.remote_traceback = remote_type, remote_traceback

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.remote_type, self.remote_traceback)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.remote_type}: {str(self)!r})"


class RemoteCaikitCoreError(CaikitCoreException, RemoteError):
    """Stand-in for a ``CaikitCoreException`` subclass: same ``status_code`` and ``message``."""

    def __init__(
        self,
        status_code: CaikitCoreStatusCode,
        message: str,
        remote_type: str = "",
        remote_traceback: str = "",
    ):
        CaikitCoreException.__init__(self, status_code, message)
        RemoteError.__init__(self, message, remote_type, remote_traceback)

    def __reduce__(self) -> tuple:
        return type(self), (self.status_code, self.message, self.remote_type, self.remote_traceback)


class RemoteCaikitRuntimeError(CaikitRuntimeException, RemoteError):
    """Stand-in for a ``CaikitRuntimeException`` subclass: same status, message, metadata."""

    def __init__(
        self,
        status_code: grpc.StatusCode,
        message: str,
        metadata: dict | None = None,
        remote_type: str = "",
        remote_traceback: str = "",
    ):
        CaikitRuntimeException.__init__(self, status_code, message, metadata)
        self.remote_type, self.remote_traceback = remote_type, remote_traceback

    def __reduce__(self) -> tuple:
        return type(self), (
            self.status_code,
            self.message,
            self.metadata,
            self.remote_type,
            self.remote_traceback,
        )


class RemoteRpcError(grpc.RpcError, RemoteError):
    """Stand-in for a ``grpc.RpcError`` (a failed call the module made): ``code()`` and
    ``details()`` as the original's, which ``caikit.runtime`` passes on to its client."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        remote_type: str = "",
        remote_traceback: str = "",
    ):
        RemoteError.__init__(self, details, remote_type, remote_traceback)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def __reduce__(self) -> tuple:
        return type(self), (self._code, self._details, self.remote_type, self.remote_traceback)


def _rebuild(cls: type, args: tuple, state: dict) -> BaseException:
    """Step 2 on the caller: the exception's own class, without calling ``__init__``."""
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class _ByState:
    """Pickles as ``_rebuild`` of an exception's class, ``args`` and attributes (step 2)."""

    def __init__(self, err: BaseException):
        self.err = err

    def __reduce__(self) -> tuple:
        err = self.err
        return _rebuild, (type(err), err.args, dict(getattr(err, "__dict__", {})))


def _dumps(value: Any) -> bytes:
    """pickle, else cloudpickle (a class defined in ``__main__``), as distributed does;
    without its error log: failing here is expected, the next step handles it."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:  # noqa: BLE001 - try cloudpickle
        return cloudpickle.dumps(value, protocol=5)


def _loads_back(blob: bytes) -> bool:
    try:
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - whatever stops the round trip
        return False
    return True


def stand_in(err: BaseException) -> RemoteError:
    """The stand-in for ``err`` (step 3), built on the worker from plain values."""
    remote_type = f"{type(err).__module__}.{type(err).__qualname__}"
    remote_traceback = "".join(traceback.format_exception(err))
    if isinstance(err, CaikitCoreException):
        return RemoteCaikitCoreError(
            getattr(err, "status_code", CaikitCoreStatusCode.UNKNOWN),
            str(getattr(err, "message", err)),
            remote_type,
            remote_traceback,
        )
    if isinstance(err, CaikitRuntimeException):
        metadata = getattr(err, "metadata", None)
        return RemoteCaikitRuntimeError(
            getattr(err, "status_code", grpc.StatusCode.UNKNOWN),
            str(getattr(err, "message", err)),
            _plain_metadata(metadata),
            remote_type,
            remote_traceback,
        )
    if isinstance(err, grpc.RpcError):
        code, details = _call_status(err)
        return RemoteRpcError(code, details, remote_type, remote_traceback)
    return RemoteError(_message(err), remote_type, remote_traceback)


def encode_exception(err: BaseException) -> tuple[bytes | None, RemoteError | None]:
    """What crosses for ``err``: the pickled exception (steps 1-2) and, when the caller
    may not load that, the stand-in; (None, stand-in) when neither step round-trips."""
    try:
        blob = _dumps(err)
    except Exception:  # noqa: BLE001 - unpicklable state: try without it
        blob = None
    if blob is not None and _loads_back(blob):
        return blob, None if _is_builtin(err) else stand_in(err)
    try:
        blob = _dumps(_ByState(err))
    except Exception:  # noqa: BLE001 - its attributes do not pickle either
        blob = None
    if blob is not None and _loads_back(blob):
        return blob, stand_in(err)
    return None, stand_in(err)


def decode_exception(blob: bytes | None, fallback: RemoteError | None) -> BaseException:
    """The exception to raise on the caller's side."""
    if blob is not None:
        try:
            return pickle.loads(blob)
        except Exception:  # noqa: BLE001 - e.g. its class is not importable here
            if fallback is None:
                raise
    return fallback


def _is_builtin(err: BaseException) -> bool:
    """Built-in exceptions load wherever Python does: no stand-in needed."""
    return type(err).__module__ == "builtins"


def _message(err: BaseException) -> str:
    try:
        return str(err)
    except Exception:  # noqa: BLE001 - a broken __str__ still gets a message
        return repr(err)


def _plain_metadata(metadata: Any) -> dict | None:
    if not isinstance(metadata, dict):
        return None
    return {str(key): value for key, value in metadata.items() if _round_trips(value)}


def _round_trips(value: Any) -> bool:
    """Whether a metadata value pickles and loads back (others are left out)."""
    try:
        return _loads_back(_dumps(value))
    except Exception:  # noqa: BLE001 - dropped from the stand-in's metadata
        return False


def _call_status(err: BaseException) -> tuple[grpc.StatusCode, str]:
    """A gRPC error's status code and details, as ``caikit.runtime`` reads them."""
    code, details = grpc.StatusCode.UNKNOWN, _message(err)
    try:
        if callable(getattr(err, "code", None)):
            code = err.code() or code
        if callable(getattr(err, "details", None)):
            details = err.details() or details
    except Exception:  # noqa: BLE001 - an RpcError without a call behind it
        pass
    return code, details
