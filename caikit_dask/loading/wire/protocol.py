"""What both ends of a call agree on: the request, the outcome, the actor's methods.

A call is pickled once, in the caller's thread, into one ``bytes`` object: the
comm layer then passes it on as it is instead of serialising each argument, a
failure names the argument at the call, and ``max_payload_size`` is checked
against the real size. On the worker the outcome (result or exception) is
pickled the same way, in the model's thread, so the event loop only moves bytes;
streams answer each chunk as such an outcome too, so any transport carries the same
bytes. An exception crosses as itself or as a faithful stand-in (``exceptions``).
Pickling is distributed's (pickle, falling back to cloudpickle), as Dask's own.
"""

from __future__ import annotations

import inspect
import pickle
import typing
from collections.abc import Callable
from typing import Any

from caikit.core.data_model import DataStream
from caikit.core.data_model.runtime_context import RuntimeServerContextType
from dask.utils import format_bytes
from distributed.protocol.pickle import dumps, loads

from ...errors import error
from ...pickling import unpicklable_argument
from .context import ForwardedContext
from .exceptions import decode_exception, encode_exception

# The ModelActor methods the caller side calls (actor/model_actor.py defines them).
RUN_BATCH = "run_batch"  # coalesced unary calls: tickets and the outcomes ready so far
COLLECT = "collect"  # the outcomes of earlier tickets, once one is ready
RUN_STOPPABLE = "run_stoppable"  # one call that CANCEL can stop (prediction jobs)
CANCEL = "cancel"
OPEN_STREAM = "open_stream"  # an output stream: its id and first chunk
NEXT_CHUNK = "next_chunk"
CLOSE_STREAM = "close_stream"
PING = "ping"  # health check and the load's measured size, answered on the event loop
CALL_ADDRESS = "call_address"  # where the direct call path reaches the actor (see ``framing``)
ACTOR_METHODS = (
    RUN_BATCH,
    COLLECT,
    RUN_STOPPABLE,
    CANCEL,
    OPEN_STREAM,
    NEXT_CHUNK,
    CLOSE_STREAM,
    PING,
    CALL_ADDRESS,
)

# Calls one actor runs at once (its share of the worker's thread pool); more wait in
# the actor. Backpressure counts against it.
MAX_CONCURRENCY = 4

# Where a runtime's request context comes from: it cannot be pickled, so it crosses
# as a ForwardedContext. Recognised by the parameter it is passed for (see
# ``context_parameters``), else by its class (one of these packages' in its MRO, as a
# subclass of grpc.ServicerContext is) or by what it offers (``invocation_metadata()``).
_RUNTIME_CONTEXT_PACKAGES = frozenset({"grpc", "starlette", "fastapi"})
_is_context_class: dict[type, bool] = {}  # per argument class, decided once


def _looks_like_a_context(cls: type) -> bool:
    if any(k.__module__.split(".")[0] in _RUNTIME_CONTEXT_PACKAGES for k in cls.__mro__):
        return True
    return callable(getattr(cls, "invocation_metadata", None))


def sendable(value: Any) -> Any:
    """An argument as it can cross to a worker: input streams collected, runtime
    contexts replaced by their metadata."""
    if isinstance(value, DataStream):
        # list(iter(...)), not list(value): list() asks len() for a size hint, and
        # DataStream.__len__ iterates the stream, which drains a single-pass stream such as
        # the runtime's input stream (itertools.tee over the gRPC requests) before the copy.
        return DataStream.from_iterable(list(iter(value)))
    cls = type(value)
    is_context = _is_context_class.get(cls)
    if is_context is None:
        is_context = _is_context_class[cls] = _looks_like_a_context(cls)
    return ForwardedContext.from_runtime(value) if is_context else value


def sendable_call(
    args: tuple, kwargs: dict, contexts: tuple[tuple[int | None, str], ...] = ()
) -> tuple[tuple, dict]:
    """``sendable`` for each argument of a call; the ones passed for a context parameter
    (``contexts``: its position and name, see ``context_parameters``) cross as contexts
    whatever their class."""
    args = tuple(sendable(value) for value in args)
    kwargs = {name: sendable(value) for name, value in kwargs.items()}
    for position, name in contexts:
        if name in kwargs:
            kwargs[name] = ForwardedContext.from_runtime(kwargs[name])
        elif position is not None and position < len(args):
            args = (
                *args[:position],
                ForwardedContext.from_runtime(args[position]),
                *args[position + 1 :],
            )
    return args, kwargs


def context_parameters(function: Any, declared: str | None) -> tuple[tuple[int | None, str], ...]:
    """A task method's context parameters, as caikit knows them: the one its task method
    declares (``context_arg``) and any annotated ``RuntimeServerContextType``; each with
    its position among the arguments after ``self`` (None if keyword-only)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())[1:]
    except (TypeError, ValueError):
        parameters = []
    found = []
    for position, parameter in enumerate(parameters):
        if parameter.name == declared or _is_context_annotation(parameter.annotation):
            keyword_only = parameter.kind is inspect.Parameter.KEYWORD_ONLY
            found.append((None if keyword_only else position, parameter.name))
    if declared and declared not in {name for _, name in found}:
        found.append((None, declared))
    return tuple(found)


def _is_context_annotation(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    if isinstance(annotation, str):
        return "RuntimeServerContextType" in annotation
    if annotation == RuntimeServerContextType:
        return True
    context_refs = set(typing.get_args(RuntimeServerContextType))
    return bool(context_refs) and context_refs <= set(typing.get_args(annotation))


def _dumps(value: tuple) -> bytes:
    """distributed's ``dumps`` of a tuple, without its per-call module lookup.

    It pickles, and uses cloudpickle instead when that fails or the pickle names
    ``__main__``, or when the object's own module is pickled by value, which a tuple's
    never is; this does the same, skipping that lookup (~10 us a call).
    """
    try:
        result = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - distributed's dumps tries cloudpickle, or says why
        return dumps(value)
    return dumps(value) if b"__main__" in result else result


def encode_request(method: str, args: tuple, kwargs: dict, max_payload_size: int | None) -> bytes:
    """The call as one pickle; errors name the argument that cannot be sent."""
    try:
        request = _dumps((method, args, kwargs))
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
    return run_as_outcome(lambda: _call(model, request))


def _call(model: Any, request: bytes) -> Any:
    method, args, kwargs = decode_request(request)
    return getattr(model, method)(*args, **kwargs)


def run_as_outcome(work: Callable[[], Any]) -> bytes:
    """``work()``'s result or exception as outcome bytes (unary calls, stream chunks).

    Any exception the module raises crosses (see ``exceptions``); a result that
    cannot be pickled becomes a TypeError saying so.
    """
    try:
        result = work()
    except Exception as err:  # noqa: BLE001 - handed back to the caller
        return failed_outcome(err)
    try:
        return _dumps((True, result))
    except Exception as err:  # noqa: BLE001 - result not picklable
        return failed_outcome(
            TypeError(
                f"The model's result ({type(result).__name__}) cannot be sent back from the "
                f"worker: {type(err).__name__}: {err}"
            )
        )


def failed_outcome(err: BaseException) -> bytes:
    """The outcome of a call that raised ``err``: its pickle and, where needed, a stand-in."""
    blob, stand_in = encode_exception(err)
    return dumps((False, blob, stand_in))


def decode_outcome(outcome: bytes) -> Any:
    """The call's result, or its exception raised here."""
    decoded = loads(outcome)  # (True, result) or (False, pickled exception, stand-in)
    if decoded[0]:
        return decoded[1]
    raise decode_exception(decoded[1], decoded[2])
