"""One model's metrics, bound once, and the decorators that count and time its calls.

A call pays for two child updates (its outcome counter, its duration histogram) and one
dict lookup: the children for every task method are bound when the model is loaded
(``labels`` is never called on the call path), and gauges are read at scrape time
instead (see ``served``). The decorators wrap the call path's entry points
(``calls.retrying.call``, ``calls.streams.stream``) without logic at their call site.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

from ..errors import ModelOverloaded
from . import families


class MethodMetrics:
    """The children of one (model, method): a counter per outcome and the duration."""

    __slots__ = ("ok", "error", "overloaded", "timeout", "duration")

    def __init__(self, model: str, method: str):
        self.ok = families.calls.labels(model, method, "ok")
        self.error = families.calls.labels(model, method, "error")
        self.overloaded = families.calls.labels(model, method, "overloaded")
        self.timeout = families.calls.labels(model, method, "timeout")
        self.duration = families.call_duration.labels(model, method)

    def failed(self, err: BaseException) -> Any:
        """The outcome counter of a call that raised ``err``."""
        if isinstance(err, ModelOverloaded):
            return self.overloaded
        if isinstance(err, TimeoutError):
            return self.timeout
        return self.error


class ModelMetrics:
    """What one served model reports: its name and a ``MethodMetrics`` per task method.

    ``model`` is the last part of the model's path: what caikit.runtime calls the model id.
    Without methods (``ModelMetrics()``) nothing is counted.
    """

    def __init__(self, model: str = "", methods: Iterable[str] = ()):
        self.model = model
        self.methods = {method: MethodMetrics(model, method) for method in methods}

    @classmethod
    def for_path(cls, path: Any, methods: Iterable[str]) -> ModelMetrics:
        return cls(model_name(path), methods)

    # Rare events: bound when they happen.
    def loaded(self, reason: str, seconds: float) -> None:
        if self.model:
            families.loads.labels(self.model, reason).inc()
            families.load_duration.labels(self.model, reason).observe(seconds)

    def load_failed(self, reason: str) -> None:
        if self.model:
            families.load_failures.labels(self.model, reason).inc()

    def evicted(self) -> None:
        if self.model:
            families.evictions.labels(self.model).inc()

    def moved(self) -> None:
        if self.model:
            families.moves.labels(self.model).inc()


def model_name(path: Any) -> str:
    """The model's name: the last part of its path (caikit.runtime's model id)."""
    return os.path.basename(os.path.normpath(str(path))) or str(path)


def measured_call(call: Callable[[Any, str, bytes], Any]) -> Callable[[Any, str, bytes], Any]:
    """``call(replica_set, method, request)``, counted by outcome and timed."""

    @functools.wraps(call)
    def measured(replica_set: Any, method: str, request: bytes) -> Any:
        children = replica_set.metrics.methods.get(method)
        if children is None:
            return call(replica_set, method, request)
        started = perf_counter()
        try:
            answer = call(replica_set, method, request)
        except BaseException as err:
            children.failed(err).inc()
            children.duration.observe(perf_counter() - started)
            raise
        children.ok.inc()
        children.duration.observe(perf_counter() - started)
        return answer

    return measured


def measured_stream(
    stream: Callable[[Any, str, bytes], Iterator[Any]],
) -> Callable[[Any, str, bytes], Iterator[Any]]:
    """``stream(replica_set, method, request)``, counted by outcome and timed until its
    last item (a stream the caller stops reading early counts as ok)."""

    @functools.wraps(stream)
    def measured(replica_set: Any, method: str, request: bytes) -> Iterator[Any]:
        children = replica_set.metrics.methods.get(method)
        if children is None:
            yield from stream(replica_set, method, request)
            return
        started = perf_counter()
        outcome = children.ok
        try:
            yield from stream(replica_set, method, request)
        except GeneratorExit:
            raise
        except BaseException as err:
            outcome = children.failed(err)
            raise
        finally:
            outcome.inc()
            children.duration.observe(perf_counter() - started)

    return measured
