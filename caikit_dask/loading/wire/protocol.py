"""What both ends of a call agree on: the request, the outcome, the actor's methods.

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

from caikit.core.data_model import DataStream
from dask.utils import format_bytes
from distributed.protocol.pickle import dumps, loads

from ...errors import error
from ...pickling import unpicklable_argument
from .context import ForwardedContext

# The ModelActor methods the caller side calls (actor/model_actor.py defines them).
RUN_BATCH = "run_batch"  # coalesced unary calls: tickets and the outcomes ready so far
COLLECT = "collect"  # the outcomes of earlier tickets, once one is ready
RUN_STOPPABLE = "run_stoppable"  # one call that CANCEL can stop (prediction jobs)
CANCEL = "cancel"
OPEN_STREAM = "open_stream"  # an output stream: its id and first chunk
NEXT_CHUNK = "next_chunk"
CLOSE_STREAM = "close_stream"
PING = "ping"  # health check and the load's measured size, answered on the event loop
ACTOR_METHODS = (
    RUN_BATCH,
    COLLECT,
    RUN_STOPPABLE,
    CANCEL,
    OPEN_STREAM,
    NEXT_CHUNK,
    CLOSE_STREAM,
    PING,
)

# Calls one actor runs at once (its share of the worker's thread pool); more wait in
# the actor. Backpressure counts against it.
MAX_CONCURRENCY = 4

# Where a runtime's request context comes from: it cannot be pickled, so it crosses
# as a ForwardedContext.
_RUNTIME_CONTEXT_PACKAGES = ("grpc", "starlette", "fastapi")


def sendable(value: Any) -> Any:
    """An argument as it can cross to a worker: input streams collected, runtime
    contexts replaced by their metadata."""
    if isinstance(value, DataStream):
        # list(iter(...)), not list(value): list() asks len() for a size hint, and
        # DataStream.__len__ iterates the stream, which drains a single-pass stream such as
        # the runtime's input stream (itertools.tee over the gRPC requests) before the copy.
        return DataStream.from_iterable(list(iter(value)))
    if value is not None and type(value).__module__.split(".")[0] in _RUNTIME_CONTEXT_PACKAGES:
        return ForwardedContext.from_runtime(value)
    return value


def sendable_call(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``sendable`` for each argument of a call."""
    return (
        tuple(sendable(value) for value in args),
        {name: sendable(value) for name, value in kwargs.items()},
    )


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
