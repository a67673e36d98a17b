"""One inference call as it crosses to a model's actor: a request and an outcome.

A call is pickled once, in the caller's thread, into one ``bytes`` object: the
comm layer then passes it on as it is instead of serialising each argument, a
failure names the argument at the call, and ``max_payload_size`` is checked
against the real size. On the worker the outcome (result or exception) is
pickled the same way, in the model's thread, so the event loop only moves bytes.
Pickling is distributed's (pickle, falling back to cloudpickle), as Dask's own.
"""

from __future__ import annotations

import traceback
from typing import Any

from dask.utils import format_bytes
from distributed.protocol.pickle import dumps, loads

from ..errors import error
from ..pickling import unpicklable_argument


def encode_request(method: str, args: tuple, kwargs: dict, max_payload_size: int | None) -> bytes:
    """The call as one pickle; errors name the argument that cannot be sent."""
    try:
        request = dumps((method, args, kwargs))
    except Exception as err:  # noqa: BLE001 - any pickling failure means the same
        name, value = unpicklable_argument(args, kwargs)
        error(
            "<DSK60000005E>",
            TypeError(
                f"Argument {name} of {method} ({type(value).__name__}) cannot be sent to the "
                f"model's Dask actor: {type(err).__name__}: {err}. Pass data the worker can "
                "unpickle (plain values, caikit data model objects) instead."
            ),
        )
    if max_payload_size is not None and len(request) > max_payload_size:
        error(
            "<DSK60000004E>",
            ValueError(
                f"{method} request is {format_bytes(len(request))}, over max_payload_size="
                f"{format_bytes(max_payload_size)}. Send less per call or raise max_payload_size."
            ),
        )
    return request


def decode_request(request: bytes) -> tuple[str, tuple, dict]:
    return loads(request)


def run_request(model: Any, request: bytes) -> bytes:
    """Run on the worker, in the model's thread: the call's outcome, always as bytes."""
    try:
        method, args, kwargs = decode_request(request)
        outcome: tuple[bool, Any] = (True, getattr(model, method)(*args, **kwargs))
    except Exception as err:  # noqa: BLE001 - handed back to the caller
        outcome = (False, err)
    try:
        return dumps(outcome)
    except Exception as err:  # noqa: BLE001 - result or exception not picklable
        ok, value = outcome
        what = "result" if ok else "exception"
        detail = "" if ok else "".join(traceback.format_exception(value))
        return failed_outcome(
            TypeError(
                f"The model's {what} ({type(value).__name__}) cannot be sent back from the "
                f"worker: {type(err).__name__}: {err}. {detail}".rstrip()
            )
        )


def failed_outcome(err: Exception) -> bytes:
    return dumps((False, err))


def decode_outcome(outcome: bytes) -> Any:
    """The call's result, or its exception raised here."""
    ok, value = loads(outcome)
    if ok:
        return value
    raise value
