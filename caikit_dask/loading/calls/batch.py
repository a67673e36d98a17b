"""Batch scoring: one task method over many inputs, across a model's replicas, in order.

A proxy call from one thread waits for its answer before the next leaves. Here
the calling thread keeps a bounded window of calls in flight instead: it hands
requests to the replicas' channels without waiting (they coalesce into a few
actor messages per replica) and collects answers oldest first, so results come
back in input order and at most ``max_in_flight`` inputs are held at a time. A
call whose replica died is run again through the ordinary call path (``calls``),
which retries it on another replica.

A ``dask.bag.Bag`` or a dask DataFrame column is computed on the cluster one
partition at a time (the next ones computing meanwhile); its items travel
through this process to the replicas.
"""

from __future__ import annotations

import collections
import itertools
import reprlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from distributed import Client

from ...errors import BatchInputError, error
from ...formatting import seconds
from ..replicas.backpressure import queued_capacity
from ..replicas.replica import Replica
from ..replicas.replica_set import ReplicaSet
from ..wire.protocol import decode_outcome, encode_request
from .retrying import TRANSPORT_ERRORS, abandon, call, wait_for_answer

# In-flight calls per live replica: enough to fill the channel's coalesced messages.
IN_FLIGHT_PER_REPLICA = 256
# Partitions of a Bag or Series computed ahead of the one being sent.
PARTITIONS_AHEAD = 2
# Seconds between progress bar updates (tqdm redraws at most this often anyway).
_BAR_INTERVAL = 0.1

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def check_method(module_class: type, unary_methods: frozenset[str], method: str) -> None:
    """Raise naming the methods ``map`` can call when ``method`` is not one of them."""
    if method not in unary_methods:
        error(
            "<DSK60000009E>",
            ValueError(
                f"map calls a task method that takes one input and returns one result; "
                f"{module_class.__name__} has {sorted(unary_methods)}, not {method!r}"
            ),
        )


def map_inputs(
    replica_set: ReplicaSet,
    method: str,
    inputs: Any,
    args: tuple = (),
    kwargs: dict | None = None,
    progress: bool = True,
    max_in_flight: int | None = None,
    label: str | None = None,
) -> Any:
    """``method(input, *args, **kwargs)`` for each input, in input order.

    A list for an iterable or a Bag; a pandas Series with the column's index and
    name for a dask or pandas Series. The first failing input raises ``BatchInputError``
    naming it, with the model's exception as its ``__cause__``.
    """
    kwargs = kwargs or {}
    if max_in_flight is not None and (
        not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool) or max_in_flight < 1
    ):
        error(
            "<DSK60000006E>",
            ValueError(f"max_in_flight must be a positive int, not {max_in_flight!r}"),
        )
    items, total, column = _items(replica_set, inputs)
    label = label or f"{replica_set.spec.module_id}.{method}"
    with _bar(progress, total, label) as advance:
        results = list(
            _ordered_results(replica_set, method, items, args, kwargs, max_in_flight, advance)
        )
    if column is None:
        return results
    import pandas as pd

    index, name = column
    return pd.Series(results, index=pd.Index(index), name=name, dtype=None if results else object)


def _ordered_results(
    replica_set: ReplicaSet,
    method: str,
    items: Iterable,
    args: tuple,
    kwargs: dict,
    max_in_flight: int | None,
    advance: Any,
) -> Iterator[Any]:
    """Results in input order, with at most ``max_in_flight`` calls outstanding."""
    window: collections.deque[_InFlight] = collections.deque()
    try:
        for index, item in enumerate(items):
            limit = max_in_flight or _default_window(replica_set)
            while len(window) >= limit:
                yield _finish(replica_set, method, window.popleft())
                advance()
            window.append(_start(replica_set, method, index, item, args, kwargs))
            if window[-1].failure is not None:  # raised in its turn; send nothing after it
                break
        while window:
            yield _finish(replica_set, method, window.popleft())
            advance()
    finally:  # on failure or interrupt: the unanswered calls stop counting against routing
        for pending in window:
            if pending.replica is not None:
                replica_set.done(pending.replica)


def _default_window(replica_set: ReplicaSet) -> int:
    """Calls in flight by default: plenty to coalesce, never past ``max_queued_calls``."""
    live = max(1, len(replica_set.replicas))
    window = IN_FLIGHT_PER_REPLICA * live
    limit = replica_set.spec.max_queued_calls
    if limit is not None:  # what the replicas run at once plus what may queue
        window = min(window, max(1, queued_capacity(live, limit)))
    return window


class _InFlight:
    """One input's call: sent to ``replica``, or (``replica`` None) failed before leaving."""

    __slots__ = ("index", "item", "request", "replica", "pending", "deadline", "failure")

    def __init__(self, index: int, item: Any):
        self.index, self.item = index, item
        self.request: bytes | None = None
        self.replica: Replica | None = None
        self.pending: Any = None
        self.deadline = 0.0
        self.failure: BaseException | None = None


def _start(
    replica_set: ReplicaSet, method: str, index: int, item: Any, args: tuple, kwargs: dict
) -> _InFlight:
    """Send one input's call without waiting; a failure here is raised when its turn comes."""
    call_ = _InFlight(index, item)
    try:
        call_.request = encode_request(
            method, (item, *args), kwargs, replica_set.spec.max_payload_size
        )
        call_.deadline = time.monotonic() + replica_set.spec.call_timeout
        replica = replica_set.acquire(call_.deadline, set())
    except Exception as err:  # noqa: BLE001 - reported in order, naming the input
        call_.failure = err
        return call_
    try:
        call_.pending = replica.channel.submit(call_.request)
    except BaseException:
        replica_set.done(replica)
        raise
    call_.replica = replica
    return call_


def _finish(replica_set: ReplicaSet, method: str, call_: _InFlight) -> Any:
    """The call's result; a failure raised as ``BatchInputError`` naming the input."""
    try:
        if call_.failure is not None:
            raise call_.failure
        replica, call_.replica = call_.replica, None
        try:
            outcome = wait_for_answer(replica_set, replica, call_.pending, call_.deadline)
        except TimeoutError:
            abandon(call_.pending)
            raise TimeoutError(
                f"no answer within call_timeout={seconds(replica_set.spec.call_timeout)} "
                f"(replica on {replica.worker})"
            ) from None
        except TRANSPORT_ERRORS:  # its replica may be dead: the call path retries elsewhere
            abandon(call_.pending)
            replica_set.done(replica)
            replica = None
            return call(replica_set, method, call_.request)
        finally:
            if replica is not None:
                replica_set.done(replica)
        return decode_outcome(outcome)
    except Exception as err:  # noqa: BLE001 - every failure names its input
        failed = BatchInputError(
            f"{replica_set.spec.module_id}.{method} failed on input {call_.index} "
            f"({_short.repr(call_.item)}): {type(err).__name__}: {err}",
            index=call_.index,
        )
        error("<DSK60000007E>", failed, err)


# -- inputs ------------------------------------------------------------------------------------


def _items(replica_set: ReplicaSet, inputs: Any) -> tuple[Iterable, int | None, Any]:
    """The inputs one by one, their count if known, and (index, name) for a dask Series."""
    kind = _collection_kind(inputs)
    if kind == "bag":
        return _partition_items(replica_set.client, inputs, None), None, None
    if kind == "series":
        column = ([], inputs.name)
        return _partition_items(replica_set.client, inputs, column[0]), None, column
    if kind == "pandas series":
        return inputs, len(inputs), (list(inputs.index), inputs.name)
    if kind in ("frame", "pandas frame"):
        error(
            "<DSK60000008E>",
            TypeError(
                "map takes one column of a dask DataFrame, not the whole frame: pass "
                "frame['column'] (each value is one input)"
            ),
        )
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
        error(
            "<DSK60000008E>",
            TypeError(
                f"map takes an iterable of inputs, a dask.bag.Bag or a dask DataFrame column, "
                f"not {type(inputs).__name__}: pass e.g. a list of the method's first argument"
            ),
        )
    total = len(inputs) if hasattr(inputs, "__len__") else None
    return inputs, total, None


def _collection_kind(inputs: Any) -> str | None:
    """What ``inputs`` is among dask's and pandas' collections (without importing them)."""
    bag = sys.modules.get("dask.bag")
    if bag is not None and isinstance(inputs, bag.Bag):
        return "bag"
    frames = sys.modules.get("dask.dataframe")
    if frames is not None:
        if isinstance(inputs, frames.Series):
            return "series"
        if isinstance(inputs, frames.DataFrame):
            return "frame"
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if isinstance(inputs, pandas.Series):
            return "pandas series"
        if isinstance(inputs, pandas.DataFrame):
            return "pandas frame"
    return None


def _partition_items(client: Client, collection: Any, index: list | None) -> Iterator[Any]:
    """Each partition's items in order, computing ``PARTITIONS_AHEAD`` partitions ahead.

    For a Series, ``index`` collects the partitions' index labels as they are read.
    """
    partitions = iter(collection.to_delayed())
    computing = collections.deque(
        client.compute(part) for part in itertools.islice(partitions, PARTITIONS_AHEAD + 1)
    )
    try:
        while computing:
            future = computing.popleft()
            part = next(partitions, None)
            if part is not None:
                computing.append(client.compute(part))
            values = future.result()
            future.release()
            if index is not None:
                index.extend(values.index)
                values = values.tolist()
            yield from values
    finally:
        for future in computing:
            future.release()


# -- progress ----------------------------------------------------------------------------------


class _bar:
    """A ``tqdm.auto`` bar (widget in Jupyter, text in a terminal) when tqdm is installed.

    Entering gives a function to call once per finished input; updates reach the bar
    at most every ``_BAR_INTERVAL`` seconds. Without tqdm, or with ``progress=False``,
    nothing is shown.
    """

    def __init__(self, progress: bool, total: int | None, label: str):
        self._tqdm: Any = None
        if progress:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._tqdm = tqdm(total=total, desc=label, unit="call", leave=True)
        self._done = 0
        self._shown = 0
        self._next_update = 0.0

    def __enter__(self) -> Any:
        return self._advance if self._tqdm is not None else _nothing

    def _advance(self) -> None:
        self._done += 1
        now = time.monotonic()
        if now >= self._next_update:
            self._next_update = now + _BAR_INTERVAL
            self._tqdm.update(self._done - self._shown)
            self._shown = self._done

    def __exit__(self, *exc: Any) -> None:
        if self._tqdm is not None:
            self._tqdm.update(self._done - self._shown)
            self._tqdm.close()


def _nothing() -> None:
    pass
